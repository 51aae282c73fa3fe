"""Un-blind the collected ratings and test for a defacing bias per method (workflow/rules/rating.smk)."""

from defacebench.logs import job_log
from defacebench.rating.analysis import analyse

with job_log(snakemake.log[0]):
    for name, path in analyse(snakemake.input.ratings, snakemake.input.key, snakemake.params.out_dir).items():
        print(f"{name}: {path}")
