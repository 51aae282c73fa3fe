"""Measure one outcome of one subject on every image variant (the full image and each defaced copy).

One process for all variants: the imports and the arms' models load once (issue 20). Each variant gets
its own record file and label-map folder, as :func:`defacebench.runner.analyse` makes them.

When the rule also names IQM records (``iqm_records``: the NBV job of a cohort whose T1w images get
image-quality metrics, workflow/rules/quality.smk), each variant's IQMs are computed right after its
NBV, in this process, from what the NBV arm already made of the same image (brain mask, N4 field,
partial volumes, brain affine: :func:`defacebench.analysis.nbv.keep_intermediates`), instead of in a
job of their own that would make them again.
"""

from contextlib import nullcontext

from defacebench.io import write_json
from defacebench.logs import job_log
from defacebench.process import keep_freed_memory
from defacebench.runner import analyse

keep_freed_memory()  # large arrays reused, not re-faulted: see defacebench.process

with job_log(snakemake.log[0]) as log:
    params = snakemake.params
    outcome = getattr(params, "outcome", None) or snakemake.wildcards.outcome
    iqm_paths = list(snakemake.output.get("iqm_records", []))
    if iqm_paths:
        from defacebench.analysis.nbv import keep_intermediates
        from defacebench.quality.arm import image_quality_record
    for index, (variant, record_path, segmentation_dir) in enumerate(
        zip(params.variants, snakemake.output.records, snakemake.output.segmentations, strict=True)
    ):
        log.info("variant %s", variant)
        with keep_intermediates() if iqm_paths else nullcontext({}) as kept:
            records = analyse(
                outcome,
                dict(params.images[variant]),
                cohort=snakemake.wildcards.cohort,
                subject=snakemake.wildcards.subject,
                variant=variant,
                settings=dict(params.settings),
                truth_path=params.truth,
                deface_record_path=params.deface_records.get(variant),
                threads=snakemake.threads,
                # the full T1w's brain mask from the defacing preparation, for the full image only
                preparation_dir=params.preparation if variant == "none" else None,
                segmentation_dir=segmentation_dir,
                reference=params.reference,
                cohort_kind=params.kind,
            )
        write_json(records, record_path)
        if iqm_paths:
            log.info("variant %s: image-quality metrics", variant)
            details = records[0].get("details", {}) if records else {}
            brain_backend = kept.get("brain_backend", "")
            reused_from = details.get("brain_mask_reused_from")
            note = brain_backend + (f"; the defacing preparation's mask reused: {reused_from}" if reused_from else "")
            iqm = image_quality_record(
                params.images[variant].get("T1w"),
                cohort=snakemake.wildcards.cohort,
                subject=snakemake.wildcards.subject,
                variant=variant,
                deface_record_path=params.deface_records.get(variant),
                nbv_segmentation_dir=segmentation_dir,
                preparation_dir=params.preparation if variant == "none" else None,
                threads=snakemake.threads,
                nbv_intermediates=kept,
                nbv_brain_mask_note=note,
            )
            write_json(iqm, iqm_paths[index])
            kept.clear()
