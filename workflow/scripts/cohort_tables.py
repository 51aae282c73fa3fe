"""Aggregate a cohort's records into its failure, agreement and defacing tables."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.reports import write_cohort_tables

with job_log(snakemake.log[0]):
    write_cohort_tables(
        snakemake.input.analyses,
        snakemake.input.defacing,
        Path(snakemake.params.out_dir),
        snakemake.wildcards.cohort,
        segmentation_root=Path(snakemake.params.segmentation_root),
        images=dict(snakemake.params.images),
    )
