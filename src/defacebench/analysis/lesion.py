"""White-matter lesion volume (WMLV), the MS arm of the study.

Default backend ``lpa-like``: a re-implementation after the lesion prediction
algorithm (lpa) of the LST toolbox for SPM (Schmidt 2017, PhD thesis, LMU
Munich, chapter 6.1; ``ps_LST_lpa``), as used by de Sitter et al. 2020. It is
*not* LST: the steps follow lpa (see :mod:`.lesion_features`), the logistic
coefficients are fitted on a simulated cohort (``model_fitting/fit_lesion_model.py``)
and shipped in ``defacebench/data/lesion_lpa_coefficients.json`` (FLAIR alone) and
``lesion_lpa_t1w_coefficients.json`` (FLAIR with a co-registered T1w, whose
darkness against white matter adds two features, :data:`.lesion_features.T1W_FEATURE_NAMES`).

Backend ``command``: any external lesion tool, configured as a command
template, e.g. ``"matlab -batch \\"lst_lpa('{flair}','{output}')\\""``; the tool
writes a lesion probability map (or binary mask) to ``{output}``, which is
thresholded and cluster-filtered exactly like the built-in backend's map.

Pipelines of the lpa-like backend (setting ``pipeline``, :data:`PIPELINES`; explicit
``brain_backend``, ``tissue_priors`` and ``bias_field`` override the preset):

* ``modern`` (default): deepbet's brain mask (or the input's own brain when it is skull-stripped),
  the MNI152 tissue priors placed by an affine of the MNI152 brain to the subject's masked brain,
  the bias field fitted inside the brain.
* ``classic``: the whole-head route of LST's lpa, which runs on SPM12's unified segmentation
  (Ashburner & Friston 2005, NeuroImage 26:839; Schmidt et al. 2012, NeuroImage 59:3774 for the
  LGA that lpa extends). Unified segmentation registers the *whole head* affinely to its tissue
  probability maps, which have classes for the tissues outside the brain, and fits one generative
  model, tissue intensities and a bias field, to every voxel of the image. Here: one whole-head
  affine to a head template (:func:`.pathology_common.whole_head_to_mni`, after FLIRT of the whole
  head) places the MNI152 priors (``tissue_priors: whole-head``) and carries back the
  standard-space brain region in which the BET-like surface is grown (``brain_backend:
  bet-like``), and N4's field is fitted on the whole head (``bias_field: whole-head``), where
  unified segmentation's bias field sees every voxel. The whole-head step runs on the T1w
  (on the FLAIR's grid) when there is one, else on the FLAIR. The tissue means and spread of the
  lesion belief map stay those of the brain's prior-selected white and grey matter (Schmidt et al.
  2012 take them from the segmentation's tissue classes, inside the brain). A skull-stripped input
  is refused with the reason (stage ``head_registration``), as the classic NBV pipeline refuses
  it; the modern pipeline measures such images.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import nibabel as nib
import numpy as np

from ..arrays import box_affine, uncrop
from ..io import from_canonical, like, mask_like, voxel_volume_ml
from ..records import AnalysisFailure, check_plausible
from . import lesion_features as lf
from .pathology_common import (
    WHOLE_HEAD_BRAIN_MASK,
    brain_mask,
    canonical_array,
    head_registration_record,
    json_scalar,
    head_region,
    n4_correct,
    require,
    resample_to,
    resolve_pipeline,
    rigid_registrar,
    run_command,
    same_grid,
    whole_head_brain_mask,
    whole_head_to_mni,
)

BACKENDS = ("lpa-like", "command")
BACKEND_NAME = "defacebench-lpa-like (re-implementation after Schmidt 2017, LST lpa)"

#: LST reports total lesion volume at p > 0.5, without clusters of <= 0.015 ml.
DEFAULT_THRESHOLD = lf.LST_THRESHOLD
DEFAULT_MIN_CLUSTER_ML = lf.LST_MIN_CLUSTER_ML

#: Component settings each pipeline stands for (``pipeline``; see the module notes).
PIPELINES = {
    "modern": {"brain_backend": "deepbet", "tissue_priors": "brain-affine", "bias_field": "brain"},
    "classic": {"brain_backend": "bet-like", "tissue_priors": "whole-head", "bias_field": "whole-head"},
}
TISSUE_PRIORS = ("brain-affine", "whole-head")
BIAS_FIELDS = ("brain", "whole-head")

COEFFICIENTS_FILE = "lesion_lpa_coefficients.json"
T1W_COEFFICIENTS_FILE = "lesion_lpa_t1w_coefficients.json"


def uses_t1w(coefficients: dict) -> bool:
    """True for a model with the T1w features (:data:`.lesion_features.T1W_FEATURE_NAMES`)."""
    return tuple(coefficients["feature_names"]) == lf.T1W_FEATURE_NAMES


def model_inputs(coefficients: dict) -> str:
    """The images a model reads, as records name them: ``FLAIR+T1w`` or ``FLAIR``."""
    return "FLAIR+T1w" if uses_t1w(coefficients) else "FLAIR"


@lru_cache(maxsize=4)
def load_coefficients(path: str | None = None, t1w: bool = False) -> dict:
    """The shipped (or a given) lpa-like parameter file, checked for its documented fields.

    Without ``path``: the shipped FLAIR model, or with ``t1w`` the FLAIR-and-T1w model.
    """
    if path is None:
        text = (
            resources.files("defacebench")
            .joinpath("data", T1W_COEFFICIENTS_FILE if t1w else COEFFICIENTS_FILE)
            .read_text()
        )
    else:
        with open(path) as fh:
            text = fh.read()
    params = json.loads(text)
    missing = {"feature_names", "feature_mean", "feature_scale", "coefficients", "intercept", "postprocessing"} - set(
        params
    )
    if missing:
        raise ValueError(f"lesion coefficient file lacks {sorted(missing)}")
    if tuple(params["feature_names"]) not in (lf.FEATURE_NAMES, lf.T1W_FEATURE_NAMES):
        raise ValueError(
            "lesion coefficient file was fitted for other features: refit with model_fitting/fit_lesion_model.py"
        )
    return params


def t1w_on_flair(
    t1: np.ndarray, t1_c: nib.Nifti1Image, flair: np.ndarray, flair_c: nib.Nifti1Image, register: bool, threads: int
) -> tuple[np.ndarray | None, str]:
    """The T1w on the FLAIR's canonical grid, and how it got there (None: not usable, with the reason).

    On the FLAIR's own grid it is taken as it is. On another grid (a clinical 2D
    T1w and FLAIR, acquired minutes apart) it is registered rigidly to the
    FLAIR (Mattes mutual information, :func:`.pathology_common.rigid_registrar`),
    as LST's lpa coregisters its two images (Schmidt 2017): resampling by the
    affines alone, as before issue 24, left sub-ms12's T1w 2.6 mm (median over
    the brain) off its FLAIR, the T1w-darkness features fell beside the lesions
    and the lesion volume came out 28 % low (2.69 ml against 3.73 ml
    registered). ``register=False`` keeps the affine-only resampling. A failed
    registration, or a T1w that does not overlap the FLAIR, leaves the FLAIR alone.
    """
    if same_grid(t1_c, flair_c):
        return t1, "on the FLAIR's grid"
    if register:
        try:
            out = rigid_registrar(flair, flair_c.affine, None, threads)(t1, t1_c.affine)
            how = "registered rigidly to the FLAIR (Mattes MI)"
        except AnalysisFailure as exc:
            return None, f"not used: its rigid registration to the FLAIR failed ({exc.reason})"
    else:
        out = resample_to(t1, t1_c.affine, flair.shape, flair_c.affine)
        how = "resampled onto the FLAIR by the affines (register_t1w: false)"
    if not np.any(out != out.flat[0]):
        return None, "not used: it does not overlap the FLAIR"
    return out, how


def _check_components(tissue_priors: str, bias_field: str) -> None:
    if tissue_priors not in TISSUE_PRIORS:
        raise ValueError(f"tissue_priors must be one of {TISSUE_PRIORS}, not {tissue_priors!r}")
    if bias_field not in BIAS_FIELDS:
        raise ValueError(f"bias_field must be one of {BIAS_FIELDS}, not {bias_field!r}")


def _prepare(
    images: dict,
    threads: int,
    brain_backend: str,
    bias_correction: bool,
    register_t1w: bool = True,
    tissue_priors: str = "brain-affine",
    bias_field: str = "brain",
) -> dict:
    """FLAIR (and T1w) on FLAIR's canonical grid, brain mask, bias-corrected FLAIR.

    ``brain_backend`` ``bet-like`` or ``tissue_priors`` ``whole-head`` (the classic pipeline) run
    the whole-head affine first (on the T1w when there is one, else the FLAIR), which refuses a
    skull-stripped input; its subject -> MNI map is ``head_to_mni`` (else None).
    """
    _check_components(tissue_priors, bias_field)
    require(images, ("FLAIR",))
    flair, flair_c = canonical_array(images["FLAIR"])
    zooms = tuple(float(z) for z in flair_c.header.get_zooms()[:3])
    t1, t1_how = None, "none given"
    if images.get("T1w") is not None:
        t1_raw, t1_c = canonical_array(images["T1w"])
        t1, t1_how = t1w_on_flair(t1_raw, t1_c, flair, flair_c, register_t1w, threads)
    # the image the brain is found on: the T1w on the FLAIR's grid, or the FLAIR
    head, head_name = (t1, "T1w") if t1 is not None else (flair, "FLAIR")
    head_img = nib.Nifti1Image(head, flair_c.affine)  # canonical: the FLAIR's canonical affine
    head_to_mni, brain_info = None, {}
    if brain_backend == "bet-like" or tissue_priors == "whole-head":
        head_to_mni = whole_head_to_mni(head_img, "lesion")
    if brain_backend == "bet-like":
        mask, brain_info = whole_head_brain_mask(head_img, head_to_mni)
        how = WHOLE_HEAD_BRAIN_MASK
    elif t1 is not None:
        mask, how = brain_mask(head_img, t1, zooms, backend=brain_backend)
    else:
        mask, how = brain_mask(images["FLAIR"], flair, zooms, backend=brain_backend)
    volume = mask.sum() * np.prod(zooms) / 1000.0
    if volume < 300:
        raise AnalysisFailure("brain_extraction", f"brain mask of {volume:.0f} ml is implausibly small")

    def corrected(data: np.ndarray) -> np.ndarray:
        if not bias_correction:
            return np.where(mask, data, 0.0).astype(np.float32)
        # classic: the field is fitted on the whole head (unified segmentation's bias field sees every voxel)
        region = (head_region(data) | mask) if bias_field == "whole-head" else None
        return n4_correct(data, flair_c.affine, mask, threads, fit_region=region)

    return {
        "flair": corrected(flair),
        "t1": None if t1 is None else corrected(t1),
        "mask": mask,
        "canonical": flair_c,
        "zooms": zooms,
        "brain_mask": how,
        "brain_mask_details": brain_info,
        "head_to_mni": head_to_mni,
        "head_image": head_name if head_to_mni is not None else None,
        "t1w": t1_how,
    }


def lpa_like(
    images: dict,
    *,
    threads: int = 1,
    brain_backend: str = "deepbet",
    bias_correction: bool = True,
    coefficients: dict | None = None,
    register_t1w: bool = True,
    tissue_priors: str = "brain-affine",
    bias_field: str = "brain",
) -> dict:
    """Run the lpa-like pipeline; returns canonical-grid maps and the intermediate statistics.

    Keys: ``probability`` (post-processed lesion probability), ``raw_probability``,
    ``mask``, ``canonical`` (FLAIR canonical image), ``zooms``, ``stats``,
    ``brain_mask`` (how it was made), ``coefficients`` (the model used),
    ``first_pass_ml`` and ``load_shift`` (the load adaptation,
    :func:`.lesion_features.lesion_probability`; None and 0 without one); the feature
    maps: :func:`lpa_like_features`. Without ``coefficients`` the shipped model for
    the images at hand: FLAIR and T1w when a T1w overlaps the FLAIR, else FLAIR alone.
    ``brain_backend``, ``tissue_priors``, ``bias_field``: the pipeline's components (module notes).
    """
    candidates = [coefficients] if coefficients else [load_coefficients(t1w=True), load_coefficients()]
    # the brain's box must hold the widest smoothing of whichever model is chosen below
    widest = max(candidates, key=lambda c: float(c["postprocessing"].get("smooth_sigma_mm", 0.0)))
    prep = lpa_like_features(
        images,
        threads=threads,
        brain_backend=brain_backend,
        bias_correction=bias_correction,
        postprocessing=widest["postprocessing"],
        register_t1w=register_t1w,
        tissue_priors=tissue_priors,
        bias_field=bias_field,
    )
    if coefficients:
        params = coefficients
        if uses_t1w(params) and prep["t1"] is None:
            raise AnalysisFailure("configuration", "the lesion model's coefficients need a T1w that overlaps the FLAIR")
    else:
        params = candidates[0] if prep["t1"] is not None else candidates[1]
    zooms, shape, box, mask, features = (
        prep["zooms"],
        prep["mask"].shape,
        prep["box"],
        prep["box_mask"],
        prep["box_features"],
    )
    result = lf.lesion_probability(features, mask, zooms, params)
    out = {
        **{k: v for k, v in prep.items() if not k.startswith("box_")},
        "coefficients": params,
        "raw_probability": uncrop(result["raw"], box, shape),
        "probability": uncrop(result["probability"], box, shape),
        "first_pass_ml": result["first_pass_ml"],
        "load_shift": result["load_shift"],
    }
    return out


def lpa_like_features(
    images: dict,
    *,
    threads: int = 1,
    brain_backend: str = "deepbet",
    bias_correction: bool = True,
    postprocessing: dict | None = None,
    register_t1w: bool = True,
    tissue_priors: str = "brain-affine",
    bias_field: str = "brain",
) -> dict:
    """Pre-processing, registered priors, tissue statistics and feature maps: everything before the model.

    Keys of :func:`_prepare`, plus ``box`` (the brain's box, its margin set by
    ``postprocessing``'s smoothing), ``box_mask`` and ``box_features`` on that box
    (:data:`.lesion_features.T1W_FEATURE_NAMES` when a T1w overlaps the FLAIR, else
    :data:`.lesion_features.FEATURE_NAMES`), and ``stats``. Needs no coefficients,
    so the fitting script computes a cohort's features with it. ``tissue_priors``: ``brain-affine``
    (:func:`.lesion_features.tissue_priors`, the MNI152 brain registered to the subject's masked
    brain) or ``whole-head`` (:func:`.lesion_features.tissue_priors_from_mni_map`, placed by the
    whole-head affine); ``bias_field``: where N4's field is fitted, ``brain`` or ``whole-head``.
    """
    prep = _prepare(images, threads, brain_backend, bias_correction, register_t1w, tissue_priors, bias_field)
    zooms = prep["zooms"]
    # priors, features and post-processing concern the brain only: they run on its box (a third to
    # a half of a head's grid), whose margin makes every filter there equal to the whole grid's
    box = lf.brain_box(prep["mask"], zooms, postprocessing or {})
    flair, mask = prep["flair"][box], prep["mask"][box]
    t1 = None if prep["t1"] is None else prep["t1"][box]
    if tissue_priors == "whole-head":
        gm_prior, wm_prior = lf.tissue_priors_from_mni_map(
            prep["head_to_mni"], box_affine(prep["canonical"].affine, box), mask
        )
    else:
        reference = t1 if t1 is not None else flair
        gm_prior, wm_prior = lf.tissue_priors(reference, box_affine(prep["canonical"].affine, box), mask, threads)
    stats = lf.tissue_stats(flair, mask, gm_prior, wm_prior, t1)
    features = lf.lesion_features(flair, mask, gm_prior, wm_prior, zooms, stats, t1)
    return {**prep, "box": box, "box_mask": mask, "box_features": features, "stats": stats}


def lesion_probability_map(
    images: dict[str, nib.Nifti1Image],
    *,
    threads: int = 1,
    brain_backend: str | None = None,
    bias_correction: bool = True,
    coefficients_file: str | None = None,
    pipeline: str | None = None,
    **_ignored,
) -> nib.Nifti1Image:
    """Lesion probability map (float32, 0..1) on the FLAIR's own voxel grid (lpa-like backend, ``pipeline``)."""
    _, components = resolve_pipeline(pipeline, PIPELINES, {"brain_backend": brain_backend})
    result = lpa_like(
        images,
        threads=threads,
        bias_correction=bias_correction,
        coefficients=load_coefficients(coefficients_file) if coefficients_file else None,
        **components,
    )
    data = from_canonical(result["probability"], images["FLAIR"])
    return like(data, images["FLAIR"], dtype=np.float32)


def lesion_mask(
    probability: np.ndarray,
    voxel_ml: float,
    threshold: float = DEFAULT_THRESHOLD,
    min_cluster_ml: float = DEFAULT_MIN_CLUSTER_ML,
) -> tuple[np.ndarray, int]:
    """LST's lesion definition: ``probability > threshold`` minus clusters of <= ``min_cluster_ml``."""
    return lf.lesion_clusters(probability, threshold, min_cluster_ml, voxel_ml)


def _command_probability(images: dict, command: str, timeout) -> tuple[np.ndarray, float]:
    require(images, ("FLAIR",))
    inputs = {"FLAIR": images["FLAIR"]}
    if images.get("T1w") is not None:
        inputs["T1w"] = images["T1w"]
    out = run_command(command, inputs, stage="lesion_segmentation", timeout=timeout)
    flair, flair_c = canonical_array(images["FLAIR"])
    data, out_c = canonical_array(out)
    if not same_grid(out_c, flair_c):
        data = resample_to(data, out_c.affine, flair.shape, flair_c.affine, order=1)
    return data, voxel_volume_ml(flair_c)


def white_matter_lesion_volume(
    images: dict[str, nib.Nifti1Image],
    *,
    backend: str = "lpa-like",
    threads: int = 1,
    command: str | None = None,
    plausible_range_ml=None,
    threshold: float = DEFAULT_THRESHOLD,
    min_cluster_ml: float = DEFAULT_MIN_CLUSTER_ML,
    brain_backend: str | None = None,
    bias_correction: bool = True,
    coefficients_file: str | None = None,
    timeout: float | None = None,
    register_t1w: bool = True,
    pipeline: str | None = None,
    tissue_priors: str | None = None,
    bias_field: str | None = None,
    **_ignored,
) -> dict:
    """Total white-matter lesion volume (ml) from FLAIR (T1w optional; on another grid, registered to the FLAIR).

    Returns ``value`` (ml at p > ``threshold``, clusters <= ``min_cluster_ml`` dropped),
    ``backend``, ``n_lesions``, ``parameters`` and ``segmentation`` (the lesion
    mask whose voxels make ``value``, uint8, on the FLAIR's own grid). Raises
    :class:`~defacebench.records.AnalysisFailure` for a missing FLAIR, a failed
    brain extraction or registration, an external tool's error, or a volume
    outside ``plausible_range_ml``; with the classic pipeline also for a skull-stripped
    input (stage ``head_registration``).

    ``pipeline`` (lpa-like backend): ``modern`` (default) or ``classic`` (:data:`PIPELINES`, module
    notes); ``brain_backend``, ``tissue_priors`` and ``bias_field`` override its components. The
    record says which ran: ``pipeline``, and in ``parameters`` the pipeline and its components.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown WMLV backend {backend!r}; choose from {BACKENDS}")
    pipeline, components = resolve_pipeline(
        pipeline,
        PIPELINES,
        {"brain_backend": brain_backend, "tissue_priors": tissue_priors, "bias_field": bias_field},
    )
    if backend == "command":
        if not command:
            raise AnalysisFailure("configuration", "WMLV backend 'command' needs a command template")
        probability, voxel_ml = _command_probability(images, command, timeout)
        name = f"command: {command.split()[0]}"
        parameters = {"command": command, "threshold": threshold, "min_cluster_ml": min_cluster_ml}
        details = {"uses_t1w": images.get("T1w") is not None}
    else:
        result = lpa_like(
            images,
            threads=threads,
            bias_correction=bias_correction,
            coefficients=load_coefficients(coefficients_file) if coefficients_file else None,
            register_t1w=register_t1w,
            **components,
        )
        probability, voxel_ml, params = (
            result["probability"],
            voxel_volume_ml(result["canonical"]),
            result["coefficients"],
        )
        name = BACKEND_NAME
        parameters = {
            "pipeline": pipeline,
            "brain_extraction": components["brain_backend"],
            "tissue_priors": components["tissue_priors"],
            "bias_field": components["bias_field"] if bias_correction else None,
            **(
                {"head_registration": head_registration_record(result["head_image"])}
                if result["head_to_mni"] is not None
                else {}
            ),
            **({"brain_extraction_details": result["brain_mask_details"]} if result["brain_mask_details"] else {}),
            "threshold": threshold,
            "min_cluster_ml": min_cluster_ml,
            "bias_correction": bias_correction,
            "register_t1w": register_t1w,
            "coefficients_file": coefficients_file
            or (T1W_COEFFICIENTS_FILE if uses_t1w(params) else COEFFICIENTS_FILE),
            "coefficients_version": params.get("version", ""),
            "model_features": model_inputs(params),
            "thick_slice_intercept_shift": float(params.get("thick_slice_intercept_shift", 0.0)),
            "load_adaptation": params.get("load_adaptation"),
            **params["postprocessing"],
        }
        details = {
            "pipeline": pipeline,
            "uses_t1w": result["t1"] is not None,
            "t1w": result["t1w"],
            "brain_mask": result["brain_mask"],
            "flair_wm_mean": result["stats"].wm_mean,
            "flair_gm_mean": result["stats"].gm_mean,
            "first_pass_volume_ml": result["first_pass_ml"],
            "load_adaptation_shift": result["load_shift"],
        }
    lesions, n_lesions = lesion_mask(probability, voxel_ml, threshold, min_cluster_ml)
    volume = float(lesions.sum() * voxel_ml)
    low, high = plausible_range_ml or (None, None)
    check_plausible(volume, low, high, "lesion_segmentation", "lesion volume", "ml")
    return {
        "value": volume,
        "backend": name,
        "n_lesions": n_lesions,
        "parameters": json.dumps(parameters, sort_keys=True, default=json_scalar),
        "segmentation": mask_like(from_canonical(lesions, images["FLAIR"]), images["FLAIR"]),
        **details,
    }
