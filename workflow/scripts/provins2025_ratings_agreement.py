"""Provins et al. (2025): Bland-Altman and ICC of the ratings, per rater and pooled, with the figure."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.quality.provins2025 import write_ratings_agreement

with job_log(snakemake.log[0]):
    write_ratings_agreement(
        snakemake.input.ratings,
        Path(snakemake.output.tsv).parent,
        experience_path=snakemake.input.experience,
        sd_multiplier=float(snakemake.params.sd_multiplier),
        n_boot=int(snakemake.params.n_boot),
        seed=int(snakemake.params.seed),
    )
