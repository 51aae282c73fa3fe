"""Provins et al. (2025): the ratings' mixed models and likelihood-ratio tests."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.quality.provins2025 import write_ratings_lmm

with job_log(snakemake.log[0]):
    write_ratings_lmm(
        snakemake.input.ratings,
        Path(snakemake.output.tsv).parent,
        engine=snakemake.params.engine,
        poor_below=float(snakemake.params.poor_below),
    )
