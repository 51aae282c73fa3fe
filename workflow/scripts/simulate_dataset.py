"""Write a simulated cohort's dataset-level BIDS files and contact sheet."""

from pathlib import Path

from defacebench.io import read_json
from defacebench.logs import job_log
from defacebench.simulate import write_dataset_files

with job_log(snakemake.log[0]):
    truths = [read_json(next(Path(d).glob("anat/*_truth.json"))) for d in snakemake.input.truths]
    write_dataset_files(
        snakemake.params.kind, Path(snakemake.params.bids_root), truths, name=snakemake.wildcards.cohort
    )
