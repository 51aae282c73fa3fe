"""Blinded reports of every image variant of the rated cohorts, and the key (workflow/rules/rating.smk).

A variant whose image does not exist (its defacing failed; the failure is in the defacing
records) is left out and named in the log; a subject without a brain mask gets no mask view.
"""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.rating.blinding import ImageVariant, build_reports

with job_log(snakemake.log[0]):
    variants = []
    for entry in snakemake.params.variants:
        if not Path(entry["image"]).exists():
            print(
                f"left out (no image, see the defacing records): {entry['subject']} {entry['variant']} {entry['image']}"
            )
            continue
        mask = entry["brain_mask"] if entry["brain_mask"] and Path(entry["brain_mask"]).exists() else None
        variants.append(
            ImageVariant(
                entry["subject"],
                entry["variant"],
                Path(entry["image"]),
                Path(mask) if mask else None,
                Path(entry["layout_reference"]),
                entry["dataset"],
            )
        )
    build_reports(
        variants, snakemake.output.reports, snakemake.output.key, snakemake.params.seed, snakemake.params.repeats
    )
    print(f"{len(variants)} reports in {snakemake.output.reports}; key in {snakemake.output.key}.")
    print(
        f"Each rater runs: defacebench-rate serve --reports {snakemake.output.reports} "
        f"--ratings <ratings.tsv> --rater <name>"
    )
