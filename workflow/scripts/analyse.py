"""Measure one outcome on one image variant of one subject; write its records."""

from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.runner import analyse
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    records = analyse(
        snakemake.wildcards.outcome,
        dict(snakemake.params.images),
        cohort=snakemake.wildcards.cohort,
        subject=snakemake.wildcards.subject,
        variant=snakemake.wildcards.variant,
        settings=dict(snakemake.params.settings),
        truth_path=snakemake.params.truth,
        deface_record_path=snakemake.input.get("deface_record"),
        threads=snakemake.threads,
        preparation_dir=snakemake.input.get("preparation"),
        segmentation_dir=snakemake.output.segmentation,
        reference=snakemake.params.reference,
        cohort_kind=snakemake.params.kind,
    )
    write_json(records, snakemake.output.record)
