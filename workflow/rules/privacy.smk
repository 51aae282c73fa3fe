# Privacy measured as an attacker would (docs/privacy.md): per image, surface renders from several
# viewpoints, face detection and face descriptors; per cohort, the ranking attack, its table and the
# privacy-fidelity trade-off figure.


rule privacy_image:
    input:
        unpack(privacy_image_inputs),
    output:
        record=privacy_record_path("{cohort}", "{subject}", "{variant}"),
        renders=directory(f"{RESULTS}/renders/{{cohort}}/privacy/sub-{{subject}}_variant-{{variant}}"),
    params:
        image=lambda wc: privacy_image(wc.cohort, wc.subject, wc.variant),
        viewpoints=PRIVACY.get("viewpoints"),
        render_size=PRIVACY.get("render_size"),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/privacy/{{cohort}}/sub-{{subject}}_variant-{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/privacy_image/{{cohort}}/sub-{{subject}}_variant-{{variant}}.tsv"
    threads: rule_resources("privacy_image")["threads"]
    resources:
        mem_mb=rule_resources("privacy_image", mem_mb=1500)["mem_mb"],
        runtime=rule_resources("privacy_image", runtime=5)["runtime"],
    script:
        "../scripts/privacy_image.py"


rule privacy_attack:
    input:
        records=cohort_privacy_records,
        defacing=f"{RESULTS}/tables/{{cohort}}_defacing.tsv",
        agreement=f"{RESULTS}/tables/{{cohort}}_agreement.tsv",
        failures=f"{RESULTS}/tables/{{cohort}}_failures.tsv",
    output:
        tsv=f"{RESULTS}/tables/{{cohort}}_privacy.tsv",
        md=f"{RESULTS}/tables/{{cohort}}_privacy.md",
        png=f"{RESULTS}/tables/{{cohort}}_privacy_tradeoff.png",
    params:
        methods=METHODS,
        viewpoints=PRIVACY.get("viewpoints"),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/privacy/{{cohort}}_attack.log",
    benchmark:
        f"{RESULTS}/benchmarks/privacy_attack/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=rule_resources("privacy_attack", mem_mb=1000)["mem_mb"],
        runtime=rule_resources("privacy_attack", runtime=5)["runtime"],
    script:
        "../scripts/privacy_attack.py"
