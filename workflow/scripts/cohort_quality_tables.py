"""A cohort's image-quality tables: every image's IQMs, their agreement and the multivariate test per method."""

from defacebench.logs import job_log
from defacebench.quality.arm import write_iqm_tables

with job_log(snakemake.log[0]):
    write_iqm_tables(
        snakemake.input.records, snakemake.params.out_dir, snakemake.wildcards.cohort, list(snakemake.params.methods)
    )
