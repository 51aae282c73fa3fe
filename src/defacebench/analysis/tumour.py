"""Glioblastoma volume (GBV), the glioma arm of the study.

Default backend ``brats-forest``: a re-implementation after BraTumIA (Porz et
al. 2014, PLoS One 9:e96873; Meier et al. 2016, Sci Rep 6:23376), as used by de
Sitter et al. 2020. It is *not* BraTumIA: ceT1w, T2w and FLAIR are rigidly
registered to the T1w (antspyx, fast settings), the brain is extracted
(:func:`defacebench.brain.extract_brain`, or kept when the input is already
skull-stripped), N4 bias correction, intensities are standardised
(each modality divided by its median in normal white matter, found on the T1w:
:func:`.pathology_common.white_matter_standardise`), and a small decision forest
(fitted on a simulated cohort by ``model_fitting/fit_tumour_model.py``, shipped as
plain arrays in ``defacebench/data/tumour_forest.npz``) classifies each brain
voxel into necrosis, oedema, non-enhancing and enhancing tumour; the class
posteriors are spatially regularised (see :mod:`.tumour_features`) and, with the model's
``component_selection`` (issue 25), the tumour is the FLAIR-hyperintense, compact component
that is neither the brain's rim nor a sheet (:func:`.tumour_features.select_tumour`), not simply
the largest one. The forest is fitted on simulated subjects and on BraTS-like variants of them
(skull-stripped, atlas-like grid, bias, intensity scale, thick slices, and what real skull-stripped
scans show that simulated heads do not: :data:`.pathology_training.REAL_SCAN_CONFOUNDERS`).

GBV = necrosis + enhancing + non-enhancing tumour (the tumour core); the whole
tumour with oedema is reported as ``whole_tumour_ml``.

Backend ``command``: an external tumour tool, configured as a command template
with ``{t1w}``, ``{cet1w}``, ``{t2w}``, ``{flair}`` and ``{output}``; it writes a
label map (BraTS labels: 1 necrosis/non-enhancing, 2 oedema, 3 non-enhancing,
4 enhancing) to ``{output}``.

Pipelines of the forest backend (setting ``pipeline``, :data:`PIPELINES`; an explicit
``brain_backend`` overrides the preset's):

* ``modern`` (default): deepbet's brain mask on the T1w, or the input's own brain when it is
  already skull-stripped.
* ``classic``: BraTumIA's route from the whole head. BraTumIA skull-strips by registering a
  whole-head atlas to the patient's head and refining the atlas' brain mask on the image (Porz et
  al. 2014; Bauer et al. 2012, "Skull-stripping for tumor-bearing brain images",
  arXiv:1204.0357), so the face takes part in the registration that places the brain. Here: the
  whole-head affine of the T1w to a head template (:func:`.pathology_common.whole_head_to_mni`,
  after FLIRT of the whole head), the dilated MNI152 brain region carried back, and the BET-like
  surface (Smith 2002) grown inside it (:func:`.pathology_common.whole_head_brain_mask`; its
  non-rigid atlas step and level-set refinement are not re-implemented). Everything after the
  mask is the modern pipeline's: the intensity standardisation stays the white-matter one, since
  nothing in BraTumIA's description ties its intensity normalisation to the whole head. A
  skull-stripped input (BraTS-like data, sub-gbm7294) is refused with the reason (stage
  ``head_registration``), as the classic NBV pipeline refuses it.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..arrays import bounding_box, box_affine, uncrop
from ..io import from_canonical, mask_like, voxel_volume_ml
from ..records import AnalysisFailure, check_plausible
from . import tumour_features as tfeat
from . import tumour_hyperintensity as thyper
from .tumour_plausibility import PLAUSIBILITY_SETTINGS, enhancement_plausibility, tumour_plausibility
from .pathology_common import (
    WHOLE_HEAD_BRAIN_MASK,
    brain_mask,
    canonical_array,
    head_registration_record,
    json_scalar,
    n4_correct,
    require,
    resample_to,
    resolve_pipeline,
    rigid_registrar,
    run_command,
    same_grid,
    white_matter_reference,
    white_matter_standardise,
    whole_head_brain_mask,
    whole_head_to_mni,
)
from .tumour_forest import MODEL_FILE, load_forest, predict_proba

BACKENDS = ("brats-forest", "command")
BACKEND_NAME = "defacebench-tumour-forest (re-implementation after BraTumIA, Porz et al. 2014)"
MODALITIES = ("T1w", "ceT1w", "T2w", "FLAIR")

#: Component settings each pipeline stands for (``pipeline``; see the module notes).
PIPELINES = {"modern": {"brain_backend": "deepbet"}, "classic": {"brain_backend": "bet-like"}}

#: Margin (voxels) of the brain's box, on which everything after the brain mask runs. It is
#: wide enough for every feature but the 8 mm contrast (whose Gaussian reaches 32 voxels, so
#: near the box's edge it reads the mirrored brain); the forest was fitted with this margin.
BOX_MARGIN = 10

#: N4's shrink factor here (the lesion and NBV arms use :data:`.bias.N4_SETTINGS`'s 4). Every
#: modality is on the T1w's box (1 mm in the study) before N4, so a factor of 6 still samples the
#: field every 6 mm, against final B-spline knots ~40 mm apart (antspyx's mesh of 1, doubled at
#: each of the 3 levels, over a ~170 mm box). Measured 2026-11-30 against a factor of 4
#: (1 thread): four N4 runs 26 s -> 10 s per image; 5 simulated validation subjects core Dice 0.913
#: vs 0.911, volume ICC(A,1) 0.973 vs 0.970, per-subject volumes within 0.8 ml; sub-gbm7294 core
#: Dice 0.421 vs 0.418, whole tumour 0.605 vs 0.597. Not for native thick-slice grids: the lesion
#: arm's N4 on a 4 mm FLAIR at factor 6 (24 mm along the slices) left the bias in and one
#: validation subject's lesion load went from 3.6 to 30 ml.
N4_SHRINK_FACTOR = 6

#: Intensity standardisations of the forest's inputs (the model file says which it was fitted with,
#: ``metadata["standardisation"]``; files without the key: ``wm-ratio``).
#:
#: * ``wm-ratio``: each modality divided by its median in normal white matter (found on the T1w):
#:   invariant to a scale, not to an offset (a sub-gbm7294 with every modality rescaled and offset,
#:   ``bench/bench_tumour_real_like.py``, lost its whole tumour, issue 25).
#: * ``wm-csf``: two landmarks, the white matter's median (1) and the CSF's level (the 1st
#:   percentile of the brain 3 mm inside its edge, 0, where CSF is dark: T1w, ceT1w, FLAIR; the
#:   99th, 2, where it is bright: T2w). Invariant to any increasing linear map of the intensities
#:   (scale and offset, Nyul et al. 2000's landmark standardisation with two landmarks).
STANDARDISATIONS = ("wm-ratio", "wm-csf")
CSF_BRIGHT = ("T2w",)


def model_standardisation(model: dict) -> str:
    return model["metadata"].get("standardisation", "wm-ratio")


def wm_csf_standardise(data: np.ndarray, mask: np.ndarray, reference: np.ndarray, inner: np.ndarray, modality: str):
    """``data`` with its white matter at 1 and its CSF level at 0 (dark CSF) or 2 (bright CSF); 0 outside ``mask``."""
    wm = float(np.median(data[reference]))
    if modality in CSF_BRIGHT:
        csf = float(np.percentile(data[inner], 99))
        out = 1.0 + (data - wm) / (csf - wm) if csf > wm else None
    else:
        csf = float(np.percentile(data[inner], 1))
        out = (data - csf) / (wm - csf) if wm > csf else None
    if out is None or not np.isfinite(wm):
        raise AnalysisFailure("intensity_standardisation", f"{modality}: no contrast between white matter and CSF")
    return np.where(mask, out, 0.0).astype(np.float32)


def standardise(prep: dict, method: str) -> dict:
    """``prep`` with its ``standardised`` modalities made by ``method`` (:data:`STANDARDISATIONS`) from ``corrected``."""
    if method not in STANDARDISATIONS:
        raise ValueError(f"unknown standardisation {method!r}; choose from {STANDARDISATIONS}")
    mask, reference, corrected = prep["mask"], prep["reference"], prep["corrected"]
    if method == "wm-ratio":
        standardised = {m: white_matter_standardise(data, mask, reference) for m, data in corrected.items()}
    else:
        if reference.sum() < 100:
            raise AnalysisFailure("intensity_standardisation", "too few white-matter voxels to standardise intensities")
        inner = ndimage.binary_erosion(mask, iterations=max(1, int(round(3.0 / min(prep["zooms"])))))
        if inner.sum() < 1000:
            inner = mask
        standardised = {m: wm_csf_standardise(data, mask, reference, inner, m) for m, data in corrected.items()}
    return {**prep, "standardised": standardised, "standardisation": method}


def prepare(
    images: dict,
    *,
    threads: int = 1,
    register: bool = True,
    brain_backend: str = "deepbet",
    bias_correction: bool = True,
    standardisation: str = "wm-ratio",
) -> dict:
    """Co-registered, skull-stripped, standardised modalities on the T1w's canonical grid.

    Returns ``standardised`` (dict of arrays cropped to the brain's bounding box; ``standardisation``
    as :func:`standardise` makes it from ``corrected``, the bias-corrected modalities, and
    ``reference``, the normal white matter found on the T1w),
    ``mask`` (cropped), ``box`` (the crop), ``canonical`` (T1w canonical image), ``zooms``,
    ``brain_mask`` (how it was made) and, for ``brain_backend`` ``bet-like`` (the classic
    pipeline: whole-head affine of the T1w, BET-like surface inside the standard-space brain ROI;
    refuses a skull-stripped T1w), ``brain_mask_details``.
    """
    require(images, MODALITIES)
    t1, t1_c = canonical_array(images["T1w"])
    zooms = tuple(float(z) for z in t1_c.header.get_zooms()[:3])
    brain_info: dict = {}
    if brain_backend == "bet-like":
        head = nib.Nifti1Image(t1, t1_c.affine)
        mask, brain_info = whole_head_brain_mask(head, whole_head_to_mni(head, "tumour"))
        how = WHOLE_HEAD_BRAIN_MASK
    else:
        mask, how = brain_mask(images["T1w"], t1, zooms, backend=brain_backend)
    if mask.sum() * np.prod(zooms) / 1000.0 < 300:
        raise AnalysisFailure("brain_extraction", "brain mask is implausibly small")
    box = bounding_box(mask, margin=BOX_MARGIN)
    mask_c = mask[box]
    # everything after the brain mask happens on the brain's box: the other modalities are
    # registered to the whole T1w but resampled onto the box only
    on_box = {"T1w": np.ascontiguousarray(t1[box])}
    register_to_t1 = rigid_registrar(t1, t1_c.affine, box, threads) if register else None
    for m in ("ceT1w", "T2w", "FLAIR"):
        data, canon = canonical_array(images[m])
        if register:
            on_box[m] = register_to_t1(data, canon.affine)
        elif same_grid(canon, t1_c):
            on_box[m] = np.ascontiguousarray(data[box])
        else:
            on_box[m] = resample_to(data, canon.affine, mask_c.shape, box_affine(t1_c.affine, box))
    corrected = {}
    for m, cropped in on_box.items():
        if not np.any(cropped[mask_c] != cropped[mask_c][0]):
            raise AnalysisFailure("registration", f"{m} is empty inside the brain after registration")
        corrected[m] = (
            n4_correct(cropped, t1_c.affine, mask_c, threads, shrink_factor=N4_SHRINK_FACTOR)
            if bias_correction
            else cropped
        )
    # every modality relative to its own normal white matter, found on the T1w (WM = 1)
    reference = white_matter_reference(corrected["T1w"], mask_c, zooms)
    prep = {
        "corrected": corrected,
        "reference": reference,
        "mask": mask_c,
        "box": box,
        "canonical": t1_c,
        "zooms": zooms,
        "brain_mask": how,
        "brain_mask_details": brain_info,
        "shape": t1.shape,
    }
    return standardise(prep, standardisation)


def forest_posteriors(prep: dict, model: dict, X: np.ndarray | None = None) -> np.ndarray:
    """The forest's class posteriors (cropped canonical grid + class axis; background 1 outside the brain).

    ``X``: the feature matrix of ``prep`` when the caller already has it (the fitting script).
    """
    if tuple(model["metadata"]["feature_names"]) != tfeat.FEATURE_NAMES:
        raise ValueError("tumour model was fitted for other features: refit with model_fitting/fit_tumour_model.py")
    if prep.get("standardisation", "wm-ratio") != model_standardisation(model):
        raise ValueError(
            f"tumour model was fitted on {model_standardisation(model)!r} intensities, "
            f"these are {prep.get('standardisation')!r}"
        )
    mask = prep["mask"]
    if X is None:
        X = tfeat.feature_matrix(tfeat.tumour_features(prep["standardised"], mask, prep["zooms"]), mask)
    proba = predict_proba(model, X)
    posteriors = np.zeros(mask.shape + (proba.shape[1],), np.float32)
    posteriors[..., 0] = 1.0
    posteriors[mask] = proba
    return posteriors


def postprocessing(model: dict, **overrides) -> dict:
    """The model's post-processing settings (``sigma_mm``, ``min_tumour_ml``, ``largest_component_only``,
    ``component_selection``).

    Keyword arguments that are not None replace the model's; a model file
    written before a setting existed gets the setting's old behaviour (no component selection).
    ``component_selection``: False, or the settings of :func:`.tumour_features.select_tumour`
    (a dict over :data:`.tumour_features.SELECTION_SETTINGS`).
    """
    post = {
        "sigma_mm": 1.0,
        "min_tumour_ml": 0.5,
        "largest_component_only": False,
        "component_selection": False,
        **model["metadata"].get("postprocessing", {}),
    }
    post.update({k: v for k, v in overrides.items() if v is not None})
    return post


def forest_labels(
    prep: dict,
    model: dict,
    regularisation_sigma_mm: float | None = None,
    min_tumour_ml: float | None = None,
    largest_component_only: bool | None = None,
    component_selection: bool | dict | None = None,
    posteriors: np.ndarray | None = None,
) -> np.ndarray:
    """Label map (cropped canonical grid) from the forest, the spatial regularisation and the component selection.

    ``posteriors``: :func:`forest_posteriors` of ``prep`` when the caller already has them.
    """
    post = postprocessing(
        model,
        sigma_mm=regularisation_sigma_mm,
        min_tumour_ml=min_tumour_ml,
        largest_component_only=largest_component_only,
        component_selection=component_selection,
    )
    selection = post["component_selection"]
    labels = tfeat.regularise(
        forest_posteriors(prep, model) if posteriors is None else posteriors,
        model["classes"],
        prep["mask"],
        prep["zooms"],
        sigma_mm=post["sigma_mm"],
        min_tumour_ml=post["min_tumour_ml"],
        largest_component_only=bool(post["largest_component_only"]) and not selection,
    )
    if selection:
        evidence = tfeat.flair_evidence(prep["standardised"], prep["mask"], prep["zooms"])
        labels, _ = tfeat.select_tumour(
            labels,
            evidence,
            prep["mask"],
            prep["zooms"],
            selection if isinstance(selection, dict) else None,
            largest_component_only=bool(post["largest_component_only"]),
        )
    return labels


def checked_labels(
    prep: dict, model: dict, hyperintensity: bool | dict = True, posteriors: np.ndarray | None = None, **overrides
) -> tuple[np.ndarray, dict]:
    """:func:`forest_labels` checked against the FLAIR and T2w hyperintensity (:mod:`.tumour_hyperintensity`).

    Returns (labels, record): the forest's labels less those far from the brain's most hyperintense
    compact region, or, when the forest's tumour and that region barely overlap, the region with the
    forest's compartments (:func:`.tumour_hyperintensity.reconcile`; ``record["source"]`` says which). ``hyperintensity``:
    True (:data:`.tumour_hyperintensity.HYPERINTENSITY_SETTINGS`), a dict of settings, or False (the
    forest's labels, record ``{"source": "forest"}``). ``overrides``: :func:`forest_labels`'s.
    """
    if posteriors is None:
        posteriors = forest_posteriors(prep, model)
    labels = forest_labels(prep, model, posteriors=posteriors, **overrides)
    if not hyperintensity:
        return labels, {"source": "forest"}
    settings = hyperintensity if isinstance(hyperintensity, dict) else None
    region, _ = thyper.hyperintense_region(prep["standardised"], prep["mask"], prep["zooms"], settings)
    sigma = postprocessing(model, sigma_mm=overrides.get("regularisation_sigma_mm"))["sigma_mm"]
    return thyper.reconcile(labels, posteriors, model["classes"], region, prep["zooms"], sigma, settings)


def segment_tumour(
    images: dict[str, nib.Nifti1Image],
    *,
    backend: str = "brats-forest",
    threads: int = 1,
    command: str | None = None,
    register: bool = True,
    brain_backend: str | None = None,
    bias_correction: bool = True,
    model_file: str | None = None,
    timeout: float | None = None,
    pipeline: str | None = None,
    hyperintensity: bool | dict = True,
    **_ignored,
) -> nib.Nifti1Image:
    """Tumour label map (uint8) on the T1w's own voxel grid: 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing.

    ``hyperintensity``: the forest's tumour checked against the FLAIR and T2w hyperintensity
    (:func:`checked_labels`; forest backend).
    """
    _, components = resolve_pipeline(pipeline, PIPELINES, {"brain_backend": brain_backend})
    brain_backend = components["brain_backend"]
    labels, _ = _segment_canonical(
        images,
        backend=backend,
        threads=threads,
        command=command,
        register=register,
        brain_backend=brain_backend,
        bias_correction=bias_correction,
        model_file=model_file,
        timeout=timeout,
        hyperintensity=hyperintensity,
    )
    return mask_like(from_canonical(labels, images["T1w"]), images["T1w"])


def _segment_canonical(
    images,
    *,
    backend,
    threads,
    command,
    register,
    brain_backend,
    bias_correction,
    model_file,
    timeout,
    hyperintensity=True,
    with_enhancement=False,
) -> tuple[np.ndarray, dict]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown GBV backend {backend!r}; choose from {BACKENDS}")
    if backend == "command":
        if not command:
            raise AnalysisFailure("configuration", "GBV backend 'command' needs a command template")
        require(images, MODALITIES)
        out = run_command(command, {m: images[m] for m in MODALITIES}, stage="tumour_segmentation", timeout=timeout)
        t1, t1_c = canonical_array(images["T1w"])
        data, out_c = canonical_array(out)
        if not same_grid(out_c, t1_c):
            data = resample_to(data, out_c.affine, t1.shape, t1_c.affine, order=0)
        return np.rint(data).astype(np.uint8), {"canonical": t1_c, "command": command}
    model = load_forest(model_file)
    prep = prepare(
        images,
        threads=threads,
        register=register,
        brain_backend=brain_backend,
        bias_correction=bias_correction,
        standardisation=model_standardisation(model),
    )
    labels, check = checked_labels(prep, model, hyperintensity)
    labels = uncrop(labels, prep["box"], prep["shape"])
    brain = uncrop(prep["mask"], prep["box"], prep["shape"]).astype(bool)
    info = {}
    if with_enhancement:  # for the plausibility check only
        enhancement = thyper.enhancement_evidence(prep["standardised"], prep["mask"], prep["zooms"])
        info["enhancement_z"] = uncrop(enhancement, prep["box"], prep["shape"])
    return labels, {
        **info,
        "hyperintensity_check": check,
        "canonical": prep["canonical"],
        "brain_mask": prep["brain_mask"],
        "brain_mask_details": prep["brain_mask_details"],
        "brain": brain,
        "model": model,
    }


def label_volumes(labels: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """Volumes (ml) of each tumour compartment, the core (GBV) and the whole tumour."""
    vol = {name: float((labels == k).sum() * voxel_ml) for k, name in tfeat.LABELS.items() if k}
    core = vol["necrosis"] + vol["enhancing"] + vol["non-enhancing"]
    return {
        "value": core,
        "whole_tumour_ml": core + vol["oedema"],
        "necrosis_ml": vol["necrosis"],
        "enhancing_ml": vol["enhancing"],
        "nonenhancing_ml": vol["non-enhancing"],
        "oedema_ml": vol["oedema"],
    }


def glioblastoma_volume(
    images: dict[str, nib.Nifti1Image],
    *,
    backend: str = "brats-forest",
    threads: int = 1,
    command: str | None = None,
    plausible_range_ml=None,
    register: bool = True,
    brain_backend: str | None = None,
    bias_correction: bool = True,
    model_file: str | None = None,
    timeout: float | None = None,
    plausibility: bool | dict = True,
    pipeline: str | None = None,
    hyperintensity: bool | dict = True,
    **_ignored,
) -> dict:
    """Glioblastoma volume: tumour core (ml) and compartments, from T1w, ceT1w, T2w and FLAIR.

    Returns :func:`label_volumes` with ``backend``, ``parameters`` and
    ``segmentation`` (the label map measured, :func:`segment_tumour`'s labels, on the T1w's grid).

    ``plausibility``: the shape checks of :mod:`.tumour_plausibility` (True: its defaults; a dict
    overrides thresholds; False: off) on the whole tumour inside the brain mask (forest backend;
    an external tool's label map is not judged by shape, since no brain mask is made for it). Their
    measures are in ``plausibility``.

    Raises :class:`~defacebench.records.AnalysisFailure` for a missing modality,
    failed brain extraction or registration, an external tool's error, a
    core volume outside ``plausible_range_ml``, or (stage ``plausibility``) a whole tumour that
    is too large or follows the brain's surface or midline, an enhancing tumour without an
    enhancing label (:func:`.tumour_plausibility.enhancement_plausibility`), or no tumour at all;
    with the classic pipeline also for a skull-stripped T1w (stage ``head_registration``).

    ``pipeline`` (forest backend): ``modern`` (default) or ``classic`` (:data:`PIPELINES`, module
    notes); ``brain_backend`` overrides its brain extraction. The record says which ran:
    ``pipeline``, and in ``parameters`` the pipeline and its brain extraction.

    ``hyperintensity`` (forest backend): the forest's tumour checked against the brain's FLAIR and
    T2w hyperintensity (:func:`checked_labels`, :mod:`.tumour_hyperintensity`; True: its defaults, a
    dict overrides settings, False: off). ``tumour_source`` says whose whole tumour was measured
    (``forest``, or ``hyperintensity`` when the forest missed the hyperintense region) and
    ``hyperintensity_check`` the check's measures.
    """
    pipeline, components = resolve_pipeline(pipeline, PIPELINES, {"brain_backend": brain_backend})
    brain_backend = components["brain_backend"]
    labels, info = _segment_canonical(
        images,
        backend=backend,
        threads=threads,
        command=command,
        register=register,
        brain_backend=brain_backend,
        bias_correction=bias_correction,
        model_file=model_file,
        timeout=timeout,
        hyperintensity=hyperintensity,
        with_enhancement=bool(plausibility),
    )
    result = label_volumes(labels, voxel_volume_ml(info["canonical"]))
    result["segmentation"] = mask_like(from_canonical(labels, images["T1w"]), images["T1w"])
    low, high = plausible_range_ml or (None, None)
    check_plausible(result["value"], low, high, "tumour_segmentation", "tumour core volume", "ml")
    if plausibility and "brain" in info:
        if not (labels > 0).any():
            # every subject of a GBV cohort has a glioma: none found (e.g. the component selection
            # dropped a rim or a midline sheet that was all the forest labelled) is a failure, not 0 ml
            raise AnalysisFailure("plausibility", "no tumour found")
        settings = {**PLAUSIBILITY_SETTINGS, **(plausibility if isinstance(plausibility, dict) else {})}
        zooms = info["canonical"].header.get_zooms()[:3]
        measures, reasons = tumour_plausibility(labels > 0, info["brain"] | (labels > 0), zooms, settings)
        if "enhancement_z" in info:
            enhancement, enhancement_reasons = enhancement_plausibility(labels, info["enhancement_z"], zooms, settings)
            measures.update(enhancement)
            reasons += enhancement_reasons
        result["plausibility"] = {**measures, "settings": settings}
        if reasons:
            raise AnalysisFailure("plausibility", "implausible tumour segmentation: " + "; ".join(reasons))
    if backend == "command":
        result["backend"] = f"command: {command.split()[0]}"
        result["parameters"] = json.dumps({"command": command})
    else:
        result["backend"] = BACKEND_NAME
        result["pipeline"] = pipeline
        result["tumour_source"] = info["hyperintensity_check"]["source"]
        result["hyperintensity_check"] = json.dumps(info["hyperintensity_check"], sort_keys=True)
        result["brain_mask"] = info["brain_mask"]
        result["parameters"] = json.dumps(
            {
                "pipeline": pipeline,
                "brain_extraction": brain_backend,
                **(
                    {
                        "head_registration": head_registration_record("T1w"),
                        "brain_extraction_details": info["brain_mask_details"],
                    }
                    if info["brain_mask_details"]
                    else {}
                ),
                "register": register,
                "bias_correction": bias_correction,
                "model_file": model_file or MODEL_FILE,
                "n4_shrink_factor": N4_SHRINK_FACTOR if bias_correction else None,
                "model_version": info["model"]["metadata"].get("version", ""),
                "intensity_standardisation": model_standardisation(info["model"]),
                **{f"postprocessing_{k}": v for k, v in postprocessing(info["model"]).items()},
                "hyperintensity_check": (
                    {**thyper.HYPERINTENSITY_SETTINGS, **hyperintensity}
                    if isinstance(hyperintensity, dict)
                    else (dict(thyper.HYPERINTENSITY_SETTINGS) if hyperintensity else False)
                ),
            },
            sort_keys=True,
            default=json_scalar,
        )
    return result
