"""Simulate one subject of a cohort, with its ground truth."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.runner import set_threads
from defacebench.simulate import simulate_subject
from defacebench.process import keep_freed_memory

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]):
    set_threads(snakemake.threads)
    simulate_subject(
        snakemake.params.kind,
        snakemake.wildcards.subject,
        snakemake.params.seed,
        Path(snakemake.input.anatomy),
        Path(snakemake.params.bids_root),
        dict(snakemake.params.settings),
    )
