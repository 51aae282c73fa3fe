"""Provins et al. (2025): every published claim against our value."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.quality.provins2025 import write_claims

with job_log(snakemake.log[0]):
    write_claims(dict(snakemake.input.items()), Path(snakemake.output.tsv).parent)
