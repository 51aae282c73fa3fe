# Image-quality metrics (after MRIQC) of every T1w image variant, and their agreement per method
# (Provins et al. 2025 asked this of PyDeface on IXI). On when the config says quality: {iqms: true}.


rule image_quality:
    input:
        unpack(quality_inputs),
    output:
        record=iqm_record("{cohort}", "{subject}", "{variant}"),
    params:
        t1w=lambda wc: variant_image_paths(wc.cohort, wc.subject, wc.variant).get("T1w"),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/quality/{{cohort}}/sub-{{subject}}_variant-{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/quality/{{cohort}}/sub-{{subject}}_variant-{{variant}}.tsv"
    threads: rule_resources("image_quality")["threads"]
    resources:
        mem_mb=rule_resources("image_quality", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("image_quality", runtime=15)["runtime"],
    script:
        "../scripts/image_quality.py"


rule cohort_quality_tables:
    input:
        records=cohort_iqm_records,
    output:
        quality_table_files("{cohort}"),
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        methods=METHODS,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/tables/{{cohort}}_quality.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/{{cohort}}_quality.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/cohort_quality_tables.py"
