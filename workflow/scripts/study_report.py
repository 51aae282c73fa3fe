"""Write the study report, <results>/report.html, and its figures for `snakemake --report`."""

from defacebench.logs import job_log
from defacebench.report import write_report

with job_log(snakemake.log[0]):
    write_report(snakemake.params.results, snakemake.config, snakemake.output.html, figure_dir=snakemake.output.figures)
