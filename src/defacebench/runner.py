"""Run one outcome's analysis on one subject's image variant and make its records.

This is the seam between the workflow and the arms: it turns a defacing step
that failed, a missing or unreadable image, or an arm's
:class:`~defacebench.records.AnalysisFailure` into failed records, and lets
every other exception (a bug) propagate.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import nibabel as nib
import numpy as np

from .cohorts import OUTCOME_MODALITIES, OUTCOME_RECORDS, TRUTH_KEYS
from .io import load_image, oblique_warning, read_json, validate_input_image
from .records import AnalysisFailure, Record, package_versions, run_recorded

#: Outcome -> (module, function) of its arm.
ARMS = {
    "NBV": ("defacebench.analysis.nbv", "normalised_brain_volume"),
    "WMLV": ("defacebench.analysis.lesion", "white_matter_lesion_volume"),
    "GBV": ("defacebench.analysis.tumour", "glioblastoma_volume"),
}

#: Settings of an arm's config block that the study plan or the runner reads and the arm does not take.
PLAN_SETTINGS = ("check_executable", "near_zero_ml")

#: A lesion volume below this (ml) in a cohort labelled MS (``kind: ms``) is flagged as implausible
#: (``analysis.WMLV.near_zero_ml`` overrides it). A choice, not a measurement: MS is diagnosed on
#: lesions (McDonald 2017: at least one T2 lesion in two of four regions, Thompson et al. 2018), so a
#: patient's volume near zero more likely means the segmentation missed them; issue 24's clinical
#: 2D scans came out at 0.0 and 0.1 ml, both below it. A warning on an ``ok`` record, never a failure.
NEAR_ZERO_LESION_ML = 0.2

#: Distributions whose versions each record carries.
TOOLS = ("antspyx", "deepbet", "torch", "nibabel", "numpy", "scipy", "scikit-learn")


def set_threads(threads: int) -> None:
    """Tell ITK, OpenMP/BLAS and torch how many threads this job was given."""
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "DEFACEBENCH_THREADS"):
        os.environ[var] = str(threads)


@contextmanager
def preparation_mask(preparation_dir: str | Path | None, t1w_path: str | Path | None):
    """Within the block, brain extraction reuses the defacing preparation's mask of the same full T1w.

    The preparation ran the same backend on the same voxels
    (:func:`defacebench.deface.prepare_subject`); the mask is reused only where
    the voxels, the backend and the thread count match
    (:func:`defacebench.brain.known_mask`), so the arm gets the mask it would
    have made. Yields the list of the mask's uses in the block: empty when it
    was not used, or not offered (no preparation, no mask, or a preparation
    that predates the thread record).
    """
    from .brain import known_mask

    if preparation_dir is None or t1w_path is None:
        yield []
        return
    preparation_dir = Path(preparation_dir)
    mask_path = preparation_dir / "brain_mask.nii.gz"
    info = read_json(preparation_dir / "preparation.json").get("brain_extraction", {})
    if not mask_path.exists() or "threads" not in info or not Path(t1w_path).exists():
        yield []
        return
    mask = np.asarray(load_image(mask_path).dataobj) > 0
    with known_mask(load_image(t1w_path), mask, info["backend"], int(info["threads"]), source=str(mask_path)) as uses:
        yield uses


def load_images(paths: dict[str, str | Path], modalities) -> dict[str, nib.Nifti1Image]:
    """Load the images an outcome needs; a missing or unusable one is a study failure at stage ``input``.

    Every image passes :func:`defacebench.io.validate_input_image`, whose
    failure names the file and its defect (unreadable, empty, not 3D, no or a
    singular affine, a broken link, NaN or infinite voxels).
    """
    images = {}
    for modality in modalities:
        path = paths.get(modality)
        if path is None:
            raise AnalysisFailure("input", f"no {modality} image for this subject")
        images[modality] = validate_input_image(path)
    return images


def deface_failure(deface_record: dict | None, modalities) -> str | None:
    """Why an image variant's ``modalities`` do not exist, from its defacing record (None: they exist)."""
    if deface_record is None:
        return None
    if deface_record.get("status") == "failed":
        return f"{deface_record.get('failed_stage') or 'deface'}: {deface_record.get('message', '')}".strip()
    per_image = deface_record.get("images", {})
    for modality in modalities:
        info = per_image.get(modality, {})
        if info.get("status") == "failed":
            return f"{modality}: {info.get('failed_stage', 'deface')}: {info.get('message', '')}"
    return None


def analyse(
    outcome: str,
    image_paths: dict[str, str | Path],
    *,
    cohort: str,
    subject: str,
    variant: str,
    settings: dict | None = None,
    truth_path: str | Path | None = None,
    deface_record_path: str | Path | None = None,
    threads: int = 1,
    preparation_dir: str | Path | None = None,
    segmentation_dir: str | Path | None = None,
    reference: dict | None = None,
    cohort_kind: str | None = None,
) -> list[dict]:
    """Analyse one image variant for ``outcome``; returns the records (dicts) it produced.

    GBV yields two records: the tumour core (GBV) and the whole tumour with oedema (WTV).
    ``preparation_dir``, for the full images (variant ``none``): the subject's
    defacing preparation, whose brain mask of the full T1w the arm's brain
    extraction takes instead of running the backend again on the same voxels
    (:func:`preparation_mask`); the records say so (``brain_mask_reused_from``).

    The arm's label map, when it returns one (``segmentation``), is written to
    ``segmentation_dir`` (created even when the analysis fails, then left
    empty) under :func:`defacebench.overlap.segmentation_name`; the records name
    it (``segmentation``) and, for a simulated subject, carry its Dice against
    the truth (``dice_vs_truth``, :func:`defacebench.overlap.region_dice`).

    ``reference`` (a BIDS cohort with reference labels,
    :func:`defacebench.reference.analysis_reference`): ``derivatives`` and the
    outcome's ``spec``; every successful record then carries its Dice, volume
    difference and HD95 against the subject's reference on the reference's
    grid, or ``reference_missing`` with the reason
    (:func:`defacebench.reference.reference_entry`).

    ``cohort_kind`` (``ms``, ``glioma``, ``healthy``, or None): in a cohort
    labelled MS a lesion volume below :data:`NEAR_ZERO_LESION_ML` gets
    ``plausibility`` and a warning (:func:`lesion_plausibility`).
    """
    settings = dict(settings or {})
    set_threads(threads)
    backend = settings.get("backend", "")
    modalities = OUTCOME_MODALITIES[outcome]
    if outcome == "WMLV":  # the lesion arm runs on FLAIR alone when there is no T1w
        modalities = ("FLAIR",)
    truth = read_json(truth_path) if truth_path and Path(truth_path).exists() else {}
    deface_record = read_json(deface_record_path) if deface_record_path else None
    module_name, function_name = ARMS[outcome]
    arm = getattr(import_module(module_name), function_name)

    made: dict = {}  # what the arm returned besides the record's fields

    def run():
        failed = deface_failure(deface_record, modalities)
        if failed:
            raise AnalysisFailure("deface", f"defacing failed, no image to analyse ({failed})")
        images = load_images(image_paths, modalities)
        if outcome == "WMLV" and "T1w" in image_paths and Path(image_paths["T1w"]).exists():
            images["T1w"] = validate_input_image(image_paths["T1w"])
        made["warnings"] = [
            warning
            for modality, img in images.items()
            if (warning := oblique_warning(modality, img, image_paths.get(modality)))
        ]
        arm_settings = {k: v for k, v in settings.items() if k not in ("backend", *PLAN_SETTINGS)}
        result = dict(
            arm(images, backend=backend, threads=threads, **arm_settings)
            if backend
            else arm(images, threads=threads, **arm_settings)
        )
        # an image, not a record field: written below, once the record says the analysis succeeded
        made["segmentation"] = result.pop("segmentation", None)
        return result

    with preparation_mask(preparation_dir, image_paths.get("T1w")) as mask_uses:
        primary = run_recorded(
            run,
            cohort=cohort,
            subject=subject,
            variant=variant,
            outcome=outcome,
            unit="ml",
            backend=backend,
            tool_versions=package_versions(*TOOLS),
            truth=truth.get(TRUTH_KEYS[outcome]),
        )
    if mask_uses:
        primary.details["brain_mask_reused_from"] = "; ".join(sorted(set(mask_uses)))
    implausible = lesion_plausibility(primary, cohort_kind, settings.get("near_zero_ml", NEAR_ZERO_LESION_ML))
    if implausible:
        primary.details["plausibility"] = "near_zero_lesion_volume_in_ms"
        made["warnings"] = [*(made.get("warnings") or []), implausible]
    if made.get("warnings"):  # what the record's value may not say by itself (an oblique input)
        primary.details["warnings"] = made["warnings"]
    records = [primary]
    for extra in OUTCOME_RECORDS[outcome][1:]:
        record = Record(**{**primary.to_dict(), "outcome": extra, "truth": truth.get(TRUTH_KEYS[extra])})
        if primary.status == "ok":
            key = {"WTV": "whole_tumour_ml"}[extra]
            record.value = primary.details.get(key)
            if record.value is None:
                raise KeyError(f"the {outcome} arm did not report {key}")
        records.append(record)
    if segmentation_dir is not None:
        Path(segmentation_dir).mkdir(parents=True, exist_ok=True)
    if primary.status == "ok" and made.get("segmentation") is not None:
        _keep_segmentation(made["segmentation"], records, segmentation_dir, truth_path)
    if primary.status == "ok" and reference is not None:
        _compare_with_reference(made.get("segmentation"), records, reference, image_paths)
    return [r.to_dict() for r in records]


def analyse_subject(
    outcome: str,
    variants: list[str],
    images: dict[str, dict[str, str | Path]],
    record_paths: list[str | Path],
    segmentation_dirs: list[str | Path],
    *,
    cohort: str,
    subject: str,
    deface_records: dict[str, str | Path] | None = None,
    iqm_record_paths: list[str | Path] | None = None,
    preparation_dir: str | Path | None = None,
    log=None,
    **analysis,
) -> None:
    """Analyse every image variant of one subject for ``outcome`` in one process and write the records.

    One process for all variants, so the imports and the arms' models load once (issue 20). Variant
    ``variants[i]`` (its images ``images[variant]``, its defacing record
    ``deface_records[variant]``) gets its records in ``record_paths[i]`` and its label map in
    ``segmentation_dirs[i]``, as :func:`analyse` makes them; ``preparation_dir`` (the defacing
    preparation) is offered to the full image (``none``) only. ``analysis``: the other keywords of
    :func:`analyse` (settings, truth_path, threads, reference, cohort_kind).

    ``iqm_record_paths`` (NBV only: a cohort whose T1w images also get image-quality metrics): each
    variant's IQMs are computed right after its NBV, in this process, from what the NBV arm made of
    the same image (brain mask, N4 field, partial volumes, brain affine:
    :func:`defacebench.analysis.nbv.keep_intermediates`), instead of in a job of their own that would
    make them again (:func:`defacebench.quality.arm.image_quality_record`).
    """
    from contextlib import nullcontext

    from .io import write_json

    deface_records = deface_records or {}
    per_variant = {"record_paths": record_paths, "segmentation_dirs": segmentation_dirs}
    if iqm_record_paths:
        per_variant["iqm_record_paths"] = iqm_record_paths
    for name, given in per_variant.items():
        if len(given) != len(variants):
            raise ValueError(f"{len(variants)} variants but {len(given)} {name}")
    if iqm_record_paths:
        if outcome != "NBV":
            raise ValueError(f"image-quality metrics are computed inside NBV jobs, not {outcome} jobs")
        from .analysis.nbv import keep_intermediates
        from .quality.arm import image_quality_record
    threads = analysis.get("threads", 1)
    for index, variant in enumerate(variants):
        if log is not None:
            log.info("variant %s", variant)
        preparation = preparation_dir if variant == "none" else None
        with keep_intermediates() if iqm_record_paths else nullcontext({}) as kept:
            records = analyse(
                outcome,
                dict(images[variant]),
                cohort=cohort,
                subject=subject,
                variant=variant,
                deface_record_path=deface_records.get(variant),
                preparation_dir=preparation,
                segmentation_dir=segmentation_dirs[index],
                **analysis,
            )
        write_json(records, record_paths[index])
        if not iqm_record_paths:
            continue
        if log is not None:
            log.info("variant %s: image-quality metrics", variant)
        details = records[0].get("details", {}) if records else {}
        reused_from = details.get("brain_mask_reused_from")
        note = kept.get("brain_backend", "") + (
            f"; the defacing preparation's mask reused: {reused_from}" if reused_from else ""
        )
        iqm = image_quality_record(
            images[variant].get("T1w"),
            cohort=cohort,
            subject=subject,
            variant=variant,
            deface_record_path=deface_records.get(variant),
            nbv_segmentation_dir=segmentation_dirs[index],
            preparation_dir=preparation,
            threads=threads,
            nbv_intermediates=kept,
            nbv_brain_mask_note=note,
        )
        write_json(iqm, iqm_record_paths[index])
        kept.clear()


def lesion_plausibility(record: Record, cohort_kind: str | None, near_zero_ml: float) -> str | None:
    """Why a WMLV record of a cohort labelled MS is implausible (a near-zero volume), or None."""
    if record.outcome != "WMLV" or cohort_kind != "ms" or record.status != "ok" or record.value is None:
        return None
    if float(record.value) >= float(near_zero_ml):
        return None
    return (
        f"implausible: {float(record.value):.2f} ml of lesions (< {float(near_zero_ml):g} ml) in a cohort labelled MS; "
        "the segmentation more likely missed the lesions than the patient has none (check the lesion mask on the "
        "FLAIR; docs/failures.md)"
    )


def _compare_with_reference(segmentation, records: list[Record], reference: dict, image_paths: dict) -> None:
    """Put each record's accuracy against the subject's reference labels (or why there is none) in its details."""
    from .reference import reference_entry, session_of

    sessions = {session_of(path) for path in image_paths.values()} - {None}
    session = sessions.pop() if len(sessions) == 1 else None
    for record in records:
        entry = reference_entry(
            segmentation,
            record.outcome,
            record.subject,
            reference.get("derivatives"),
            reference.get("spec"),
            session=session,
        )
        record.details = {**record.details, **entry}


def _keep_segmentation(segmentation: nib.Nifti1Image, records: list[Record], segmentation_dir, truth_path) -> None:
    """Write an analysis' label map and put its name, and its Dice against the simulated truth, in the records."""
    from . import overlap
    from .io import save_image

    primary = records[0]
    name = overlap.segmentation_name(primary.outcome, primary.subject, primary.variant)  # one map per analysis
    if segmentation_dir is not None:
        save_image(segmentation, Path(segmentation_dir) / name)
    pairs: dict[Path, tuple] = {}  # GBV and WTV: one truth file, taken onto the map's grid once
    for record in records:
        details = dict(record.details)  # the records of one analysis must not share one dict
        if segmentation_dir is not None:
            details["segmentation"] = name
        truth_image = overlap.truth_path(truth_path, record.outcome) if truth_path else None
        if truth_image is not None and truth_image.exists():
            if truth_image not in pairs:
                pairs[truth_image] = overlap.on_one_grid(segmentation, load_image(truth_image))
            seg, ref = pairs[truth_image]
            details["dice_vs_truth"] = overlap.dice(
                overlap.region(seg, record.outcome), overlap.region(ref, record.outcome)
            )
        record.details = details
