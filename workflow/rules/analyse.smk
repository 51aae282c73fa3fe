# Outcome measures on every image variant: NBV (T1w), WMLV (FLAIR), GBV (four modalities).


rule analyse:
    input:
        unpack(analysis_inputs),
    output:
        record=f"{RESULTS}/records/{{cohort}}/{{outcome}}/sub-{{subject}}_variant-{{variant}}.json",
        # the arm's label map (none when the analysis failed): defacebench.overlap.segmentation_name
        segmentation=directory(f"{RESULTS}/segmentations/{{cohort}}/{{outcome}}/sub-{{subject}}_variant-{{variant}}"),
    params:
        images=lambda wc: variant_image_paths(wc.cohort, wc.subject, wc.variant),
        settings=lambda wc: ANALYSIS.get(wc.outcome, {}),
        truth=lambda wc: truth_json(wc.cohort, wc.subject),
        # the user's reference labels, when the cohort has them: defacebench.reference
        reference=lambda wc: analysis_reference(COHORTS[wc.cohort].reference, wc.outcome),
        # healthy, ms or glioma (a BIDS cohort's optional kind): an MS cohort's near-zero lesion volume is flagged
        kind=lambda wc: COHORTS[wc.cohort].kind,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/analyse/{{cohort}}/{{outcome}}/sub-{{subject}}_variant-{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analyse/{{cohort}}/{{outcome}}/sub-{{subject}}_variant-{{variant}}.tsv"
    threads: rule_resources("analyse")["threads"]
    resources:
        mem_mb=rule_resources("analyse", mem_mb=3000)["mem_mb"],
        runtime=rule_resources("analyse", runtime=15)["runtime"],
    script:
        "../scripts/analyse.py"
