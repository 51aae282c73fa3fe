"""Measure one outcome of one subject on every image variant (the full image and each defaced copy),
and, in the NBV job of a cohort whose T1w images get image-quality metrics (``iqm_records``,
workflow/rules/quality.smk), their IQMs from the NBV arm's own steps: :func:`defacebench.runner.analyse_subject`.
"""

from defacebench.logs import job_log
from defacebench.process import keep_freed_memory
from defacebench.runner import analyse_subject

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    analyse_subject(
        getattr(params, "outcome", None) or snakemake.wildcards.outcome,
        list(params.variants),
        {variant: dict(paths) for variant, paths in params.images.items()},
        list(snakemake.output.records),
        list(snakemake.output.segmentations),
        cohort=snakemake.wildcards.cohort,
        subject=snakemake.wildcards.subject,
        deface_records=dict(params.deface_records),
        iqm_record_paths=list(snakemake.output.get("iqm_records", [])),
        # the full T1w's brain mask from the defacing preparation, for the full image only
        preparation_dir=params.preparation,
        log=log,
        settings=dict(params.settings),
        truth_path=params.truth,
        threads=snakemake.threads,
        reference=params.reference,
        cohort_kind=params.kind,
    )
