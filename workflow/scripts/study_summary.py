"""Write the plain-text summary printed when the run ends."""

from defacebench.logs import job_log
from defacebench.reports import write_study_summary

with job_log(snakemake.log[0]):
    write_study_summary(
        snakemake.input.records,
        snakemake.input.defacing,
        snakemake.output.summary,
        snakemake.params.study,
        overlap_tsvs=snakemake.input.overlap,
        accuracy_tsvs=snakemake.input.accuracy,
    )
