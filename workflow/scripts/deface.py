"""Deface one subject's images with one method; write the images and the integrity record."""

from pathlib import Path

from defacebench.deface import deface_subject, load_preparation
from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.runner import set_threads
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    record = deface_subject(
        snakemake.wildcards.method,
        {m: Path(p) for m, p in snakemake.params.images.items()},
        Path(snakemake.output.defaced) / "anat",
        options=dict(snakemake.params.options),
        render_dir=Path(snakemake.params.render_dir) if snakemake.params.options.get("render", True) else None,
        prep=load_preparation(Path(snakemake.input.preparation)),
    )
    record.update(cohort=snakemake.wildcards.cohort, subject=snakemake.wildcards.subject)
    write_json(record, snakemake.output.record)
