"""Measure one outcome of one subject on every image variant (the full image and each defaced copy).

One process for all variants: the imports and the arms' models load once (issue 20). Each variant gets
its own record file and label-map folder, as :func:`defacebench.runner.analyse` makes them.
"""

from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.process import keep_freed_memory
from defacebench.runner import analyse

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    for variant, record_path, segmentation_dir in zip(
        params.variants, snakemake.output.records, snakemake.output.segmentations, strict=True
    ):
        log.info("variant %s", variant)
        records = analyse(
            snakemake.wildcards.outcome,
            dict(params.images[variant]),
            cohort=snakemake.wildcards.cohort,
            subject=snakemake.wildcards.subject,
            variant=variant,
            settings=dict(params.settings),
            truth_path=params.truth,
            deface_record_path=params.deface_records.get(variant),
            threads=snakemake.threads,
            # the full T1w's brain mask from the defacing preparation, for the full image only
            preparation_dir=params.preparation if variant == "none" else None,
            segmentation_dir=segmentation_dir,
            reference=params.reference,
            cohort_kind=params.kind,
        )
        write_json(records, record_path)
