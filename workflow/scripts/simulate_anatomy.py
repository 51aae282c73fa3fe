"""Prepare the head-space tissue model shared by every simulated subject (run once)."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.simulate import prepare_anatomy
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    prepare_anatomy(Path(snakemake.output[0]), threads=snakemake.threads)
