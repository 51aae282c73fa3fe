# Image variants: every configured defacing method applied to every subject's images.


rule deface:
    input:
        unpack(subject_source),
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
