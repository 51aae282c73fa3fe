# Image variants: every configured defacing method applied to every subject's images.


rule prepare_defacing:
    input:
        unpack(subject_source),
    output:
        directory(preparation_dir("{cohort}", "{subject}")),
    params:
        images=lambda wc: full_image_paths(wc.cohort, wc.subject),
        # to name a scan BIDS did not index (wrong extension) when a modality is missing
        subject_dir=lambda wc: f"{COHORTS[wc.cohort].bids_root}/sub-{wc.subject}",
        brain_extraction=DEFACE.get("brain_extraction", "deepbet"),
        render=DEFACE.get("render", True),
        render_dir=lambda wc: f"{RESULTS}/renders/{wc.cohort}/sub-{wc.subject}",
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/deface/{{cohort}}/sub-{{subject}}_preparation.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_defacing/{{cohort}}/sub-{{subject}}.tsv"
    threads: rule_resources("prepare_defacing")["threads"]
    resources:
        mem_mb=rule_resources("prepare_defacing", mem_mb=2500)["mem_mb"],
        runtime=rule_resources("prepare_defacing", runtime=10)["runtime"],
    script:
        "../scripts/prepare_defacing.py"


rule deface:
    input:
        unpack(subject_source),
        preparation=preparation_dir("{cohort}", "{subject}"),
    output:
        defaced=directory(f"{RESULTS}/defaced/{{cohort}}/{{method}}/sub-{{subject}}"),
        record=f"{RESULTS}/records/{{cohort}}/deface/sub-{{subject}}_method-{{method}}.json",
    params:
        images=lambda wc: full_image_paths(wc.cohort, wc.subject),
        options=lambda wc: {**DEFACE, **config.get("method_options", {}).get(wc.method, {})},
        render_dir=lambda wc: f"{RESULTS}/renders/{wc.cohort}/sub-{wc.subject}",
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/deface/{{cohort}}/sub-{{subject}}_method-{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/deface/{{cohort}}/sub-{{subject}}_method-{{method}}.tsv"
    threads: rule_resources("deface")["threads"]
    resources:
        mem_mb=rule_resources("deface", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("deface", runtime=10)["runtime"],
    script:
        "../scripts/deface.py"
