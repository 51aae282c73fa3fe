"""Image-quality metrics of one T1w image variant; write its record."""

from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.process import keep_freed_memory
from defacebench.quality.arm import image_quality_record

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    record = image_quality_record(
        snakemake.params.t1w,
        cohort=snakemake.wildcards.cohort,
        subject=snakemake.wildcards.subject,
        variant=snakemake.wildcards.variant,
        deface_record_path=snakemake.input.get("deface_record"),
        nbv_segmentation_dir=snakemake.input.get("nbv_segmentation"),
        preparation_dir=snakemake.input.get("preparation"),
        threads=snakemake.threads,
    )
    write_json(record, snakemake.output.record)
