# Aggregation once per cohort: failure log, complete cases, agreement statistics, study tables.


rule cohort_tables:
    input:
        analyses=cohort_analysis_records,
        defacing=cohort_deface_records,
        segmentations=cohort_segmentation_dirs,
    output:
        table_files("{cohort}"),
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
        segmentation_root=lambda wc: segmentation_root(wc.cohort),
        images=lambda wc: cohort_full_images(wc.cohort),
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/tables/{{cohort}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/{{cohort}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/cohort_tables.py"


rule study_summary:
    input:
        records=expand(f"{RESULTS}/tables/{{cohort}}_records.tsv", cohort=list(COHORTS)),
        defacing=expand(f"{RESULTS}/tables/{{cohort}}_defacing.tsv", cohort=list(COHORTS)),
        overlap=expand(f"{RESULTS}/tables/{{cohort}}_overlap.tsv", cohort=list(COHORTS)),
        accuracy=expand(f"{RESULTS}/tables/{{cohort}}_accuracy.tsv", cohort=list(COHORTS)),
    output:
        summary=f"{RESULTS}/tables/summary.txt",
    params:
        study=config["study"],
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/tables/summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/study_summary.py"
