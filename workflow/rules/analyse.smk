# Outcome measures on every image variant: NBV (T1w), WMLV (FLAIR), GBV (four modalities).
# One job per subject and outcome measures every variant (the full image and each defacing method) in one
# process: the imports (antspyx, torch) and the models (deepbet, the lesion and tumour models) load once per
# job instead of once per variant (issue 20). Every variant keeps its own record and label-map folder.


rule analyse:
    input:
        unpack(subject_analysis_inputs),
    output:
        records=expand(f"{RESULTS}/records/{{{{cohort}}}}/{{{{outcome}}}}/sub-{{{{subject}}}}_variant-{{variant}}.json", variant=VARIANTS),
        # the arm's label maps (none when the analysis failed): defacebench.overlap.segmentation_name
        segmentations=[
            directory(path)
            for path in expand(
                f"{RESULTS}/segmentations/{{{{cohort}}}}/{{{{outcome}}}}/sub-{{{{subject}}}}_variant-{{variant}}",
                variant=VARIANTS,
            )
        ],
    params:
        variants=VARIANTS,
        images=lambda wc: {v: variant_image_paths(wc.cohort, wc.subject, v) for v in VARIANTS},
        deface_records=lambda wc: {m: deface_record(wc.cohort, m, wc.subject) for m in METHODS},
        preparation=lambda wc, input: input.get("preparation"),
        settings=lambda wc: ANALYSIS.get(wc.outcome, {}),
        truth=lambda wc: truth_json(wc.cohort, wc.subject),
        # the user's reference labels, when the cohort has them: defacebench.reference
        reference=lambda wc: analysis_reference(COHORTS[wc.cohort].reference, wc.outcome),
        # healthy, ms or glioma (a BIDS cohort's optional kind): an MS cohort's near-zero lesion volume is flagged
        kind=lambda wc: COHORTS[wc.cohort].kind,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/analyse/{{cohort}}/{{outcome}}/sub-{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analyse/{{cohort}}/{{outcome}}/sub-{{subject}}.tsv"
    threads: rule_resources("analyse")["threads"]
    resources:
        mem_mb=rule_resources("analyse", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("analyse", runtime=10 * len(VARIANTS))["runtime"],
    script:
        "../scripts/analyse.py"
