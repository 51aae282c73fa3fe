"""Build one cohort's shareable BIDS dataset of one defacing method (defacebench.sharing.build_share)."""

from pathlib import Path

from defacebench.logs import job_log
from defacebench.sharing import build_share

with job_log(snakemake.log[0]) as log:
    subjects = sorted(snakemake.params.images)
    outcome = build_share(
        source_root=Path(snakemake.params.source_root),
        images={s: {m: Path(p) for m, p in snakemake.params.images[s].items()} for s in subjects},
        defaced_dirs=dict(zip(subjects, map(Path, snakemake.input.defaced))),
        records=dict(zip(subjects, map(Path, snakemake.input.records))),
        method=snakemake.wildcards.method,
        out_dir=Path(snakemake.output.share),
        options=dict(snakemake.params.options or {}),
        cohort=snakemake.wildcards.cohort,
        key_path=Path(snakemake.output.key) if "key" in snakemake.output.keys() else None,
        report_path=Path(snakemake.output.report),
    )
    log.info(
        "%s: %d image(s) shared, %d file(s) or folder(s) left out; %s",
        outcome.out_dir,
        len(outcome.report["images_shared"]),
        len(outcome.report["left_out"]),
        outcome.validation.summary(),
    )
