"""Provins et al. (2025): the published IQMs' agreement per IQM and the multivariate paired test."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.quality.provins2025 import write_iqm_tables

with job_log(snakemake.log[0]):
    write_iqm_tables(
        snakemake.input.iqms,
        Path(snakemake.output.agreement).parent,
        sd_multiplier=float(snakemake.params.sd_multiplier),
        n_boot=int(snakemake.params.n_boot),
        n_perm=int(snakemake.params.n_perm),
        n_components=snakemake.params.n_components,
        seed=int(snakemake.params.seed),
    )
