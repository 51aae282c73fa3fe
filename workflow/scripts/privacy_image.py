"""Render, detect and describe one image (full or defaced); write its privacy record."""

from pathlib import Path

from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.reidentification.run import image_record
from defacebench.runner import set_threads

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    modality, image = snakemake.params.image
    Path(snakemake.output.renders).mkdir(parents=True, exist_ok=True)
    record = image_record(
        image,
        snakemake.output.renders,
        snakemake.params.viewpoints,
        deface_record=snakemake.input.get("deface_record"),
        modality=modality,
        size=snakemake.params.render_size,
    )
    record.update(
        cohort=snakemake.wildcards.cohort, subject=snakemake.wildcards.subject, variant=snakemake.wildcards.variant
    )
    write_json(record, snakemake.output.record)
