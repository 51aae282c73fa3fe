# Image-quality metrics (after MRIQC) of every T1w image variant, and their agreement per method
# (Provins et al. 2025 asked this of PyDeface on IXI). On when the config says quality: {iqms: true}.


if IQM_NBV_COHORTS:

    # the analyse rule's NBV job with the IQM records of the same variants as further outputs
    rule analyse_nbv_iqms:
        input:
            unpack(subject_analysis_inputs),
        output:
            records=expand(f"{RESULTS}/records/{{{{cohort}}}}/NBV/sub-{{{{subject}}}}_variant-{{variant}}.json", variant=VARIANTS),
            segmentations=[
                directory(path)
                for path in expand(
                    f"{RESULTS}/segmentations/{{{{cohort}}}}/NBV/sub-{{{{subject}}}}_variant-{{variant}}",
                    variant=VARIANTS,
                )
            ],
            iqm_records=expand(f"{RESULTS}/records/{{{{cohort}}}}/IQM/sub-{{{{subject}}}}_variant-{{variant}}.json", variant=VARIANTS),
        wildcard_constraints:
            cohort=cohort_pattern(IQM_NBV_COHORTS),
        params:
            outcome="NBV",
            variants=VARIANTS,
            images=lambda wc: {v: variant_image_paths(wc.cohort, wc.subject, v) for v in VARIANTS},
            deface_records=lambda wc: {m: deface_record(wc.cohort, m, wc.subject) for m in METHODS},
            preparation=lambda wc, input: input.get("preparation"),
            settings=lambda wc: ANALYSIS.get("NBV", {}),
            truth=lambda wc: truth_json(wc.cohort, wc.subject),
            reference=lambda wc: analysis_reference(COHORTS[wc.cohort].reference, "NBV"),
            kind=lambda wc: COHORTS[wc.cohort].kind,
        conda:
            "../../envs/defacebench.yaml"
        log:
            f"{RESULTS}/logs/analyse/{{cohort}}/NBV/sub-{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/analyse/{{cohort}}/NBV/sub-{{subject}}.tsv"
        threads: rule_resources("analyse")["threads"]
        resources:
            mem_mb=rule_resources("analyse", mem_mb=3000)["mem_mb"],
            runtime=rule_resources("analyse", runtime=12 * len(VARIANTS))["runtime"],
        script:
            "../scripts/analyse.py"

    ruleorder: analyse_nbv_iqms > analyse


rule image_quality:
    input:
        unpack(quality_inputs),
    output:
        record=iqm_record("{cohort}", "{subject}", "{variant}"),
    wildcard_constraints:
        cohort=cohort_pattern(IQM_OWN_COHORTS),
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
