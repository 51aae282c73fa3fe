# Shareable defaced datasets: one method's defaced images per cohort as a BIDS dataset (docs/sharing.md).
# `snakemake share --config share_method=<method>`, or a `share:` block in the config (which also adds
# the shares to the default target).
include: "share_common.smk"


rule share:
    input:
        share_target,


rule share_cohort:
    input:
        unpack(share_inputs),
    output:
        share=directory(share_dir("{cohort}", "{method}")),
        report=share_report("{cohort}", "{method}"),
        **({"key": share_key("{cohort}", "{method}")} if SHARE and SHARE["relabel"] else {}),
    params:
        source_root=lambda wc: str(COHORTS[wc.cohort].bids_root),
        images=lambda wc: cohort_full_images(wc.cohort),
        options=SHARE,
    conda:
        "../../envs/defacebench.yaml"
    log:
        f"{RESULTS}/logs/share/{{cohort}}_{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/share/{{cohort}}_{{method}}.tsv"
    threads: 1
    resources:
        # the validator (node) holds the file tree in memory; a share's images are read one at a time
        mem_mb=rule_resources("share_cohort", mem_mb=1500)["mem_mb"],
        runtime=rule_resources("share_cohort", runtime=15)["runtime"],
    script:
        "../scripts/share.py"
