"""Run a cohort's re-identification attack; write its privacy table and trade-off figure."""

from defacebench.logs import job_log
from defacebench.reidentification.run import cohort_privacy
from defacebench.reidentification.surface import VIEWPOINTS

with job_log(snakemake.log[0]):
    cohort_privacy(
        list(snakemake.input.records),
        list(snakemake.params.methods),
        list(snakemake.params.viewpoints or VIEWPOINTS),
        snakemake.wildcards.cohort,
        snakemake.output.tsv,
        snakemake.output.md,
        snakemake.output.png,
        defacing_tsv=snakemake.input.defacing,
        agreement_tsv=snakemake.input.agreement,
        failures_tsv=snakemake.input.failures,
    )
