"""Features of the lesion arm, after LST's lesion prediction algorithm (lpa).

Schmidt P. (2017) "Bayesian inference for structured additive regression models
for large-scale problems with applications to medical imaging", PhD thesis,
LMU Munich, chapter 6.1 (the LST toolbox's ``ps_LST_lpa``); Schmidt et al. 2012,
NeuroImage 59:3774 (the lesion belief map of the lesion growth algorithm).

What is kept from lpa: FLAIR alone suffices (a T1w only helps the brain mask
and the prior registration); bias correction; tissue priors registered to the
subject; a lesion belief map (the FLAIR excess over the white- and grey-matter
means, weighted by the white-matter prior); a logistic model whose intercept
and slope vary in space through covariates (here: the WM prior and the depth
below the brain surface, rather than lpa's spline-smoothed atlas of
coefficients); LST-style post-processing. What is not: LST's coefficients,
which were fitted on 53 MS patients and are not available here; ours are
fitted on a simulated cohort (``model_fitting/fit_lesion_model.py``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..arrays import bounding_box
from ..io import to_canonical
from ..records import AnalysisFailure
from ..templates import mni152
from ..antslib import image_from_array
from .pathology_common import apply_transforms, filter_margin, register

#: Names of the logistic model's features, in the order of its coefficients.
FEATURE_NAMES = (
    "z_gm",  # (FLAIR - GM mean) / WM sd
    "z_wm",  # (FLAIR - WM mean) / WM sd
    "belief",  # lesion belief: WM-prior-weighted FLAIR excess over GM (and WM) means
    "belief_smooth",  # belief smoothed (sigma 1 mm): lesions are blobs, noise is not
    "local_excess",  # z_gm minus its 5 mm surroundings: focal brightness
    "wm_prior",  # spatially varying covariate 1: (registered) WM prior
    "depth",  # spatially varying covariate 2: depth below the brain surface (mm / 10, capped)
    "belief_x_depth",  # lets the belief slope vary with depth (cortex vs deep WM)
    "z_gm_pos_sq",  # max(z_gm, 0)^2: saturating brightness response
    "peak_fraction",  # z_wm over the peak z_wm within 4 mm: where a voxel lies on a lesion's profile
)
#: The features of the model for a FLAIR with a co-registered T1w: :data:`FEATURE_NAMES` and the
#: T1w's darkness against white matter (MS lesions are T1w-iso- to hypointense, Filippi et al. 2016,
#: MAGNIMS consensus, Lancet Neurol 15:292; the normal FLAIR-bright periventricular caps are not:
#: Neema et al. 2009, AJNR 30:911), as lesion segmentation with T1w and FLAIR does (e.g. BIANCA,
#: Griffanti et al. 2016, NeuroImage 141:191). LST's lpa uses the T1w for registration only.
T1W_FEATURE_NAMES = FEATURE_NAMES + (
    "t1_dark",  # (T1w WM mean - T1w) / T1w WM sd
    "t1_dark_smooth",  # t1_dark smoothed (sigma 1 mm)
)

#: Gaussian widths (mm) of the features: ``belief_smooth`` and the surroundings of ``local_excess``.
BELIEF_SIGMA_MM = 1.0
SURROUND_SIGMA_MM = 5.0
#: ``peak_fraction``: half-width (mm) of the neighbourhood whose peak (of z_wm smoothed at
#: :data:`BELIEF_SIGMA_MM`) a voxel is compared with, and the least peak divided by (noise, not a lesion).
PEAK_HALF_WIDTH_MM = 4.0
PEAK_FLOOR = 2.0
#: A grid with a voxel longer than this (mm) along some axis is a thick-slice grid: there a lesion's
#: profile is not resolved through the slice, so :func:`postprocess` trims its border (step 6)
#: instead of growing it to the half maximum (step 5), and :func:`raw_probability` may shift the
#: intercept.
THICK_SLICE_MM = 1.5


def is_thick(zooms) -> bool:
    """True for a thick-slice grid: a voxel longer than :data:`THICK_SLICE_MM` along some axis."""
    return max(zooms) > THICK_SLICE_MM


@dataclass
class TissueStats:
    """FLAIR tissue means and the WM spread used by the belief map."""

    wm_mean: float
    gm_mean: float
    wm_sd: float
    #: the (bias-corrected) T1w's median and spread in the same white matter, when a T1w is given
    t1_wm_mean: float | None = None
    t1_wm_sd: float | None = None


@lru_cache(maxsize=1)
def _mni_maps():
    t1 = nib.load(str(mni152("t1")))
    gm = nib.load(str(mni152("gm")))
    wm = nib.load(str(mni152("wm")))
    t1c, gmc, wmc = (to_canonical(x) for x in (t1, gm, wm))
    # nilearn stores the probability maps as 0..255
    scale = lambda img: img.get_fdata(dtype=np.float32) / max(float(img.get_fdata().max()), 1.0)
    return t1c.get_fdata(dtype=np.float32), scale(gmc), scale(wmc), t1c.affine


def tissue_priors(
    reference: np.ndarray, affine: np.ndarray, mask: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 GM and WM priors affinely registered onto the subject's grid.

    The MNI brain template (nilearn's ICBM 2009 T1) is registered to the
    brain-masked ``reference`` (T1w or FLAIR; Mattes mutual information copes
    with either contrast) with coarse, fast settings.
    """
    t1, gm, wm, mni_affine = _mni_maps()
    fixed = image_from_array(np.where(mask, reference, 0.0), affine)
    moving = image_from_array(t1, mni_affine)
    transforms = register(fixed, moving, "Affine", threads)
    gm_s = apply_transforms(fixed, image_from_array(gm, mni_affine), transforms)
    wm_s = apply_transforms(fixed, image_from_array(wm, mni_affine), transforms)
    gm_s = np.clip(np.where(mask, gm_s, 0.0), 0, 1).astype(np.float32)
    wm_s = np.clip(np.where(mask, wm_s, 0.0), 0, 1).astype(np.float32)
    if wm_s[mask].mean() < 0.1:
        raise AnalysisFailure("registration", "tissue priors did not land on the brain (MNI registration failed)")
    return gm_s, wm_s


def tissue_priors_from_mni_map(
    subject_to_mni: np.ndarray, affine: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """MNI152 GM and WM priors carried onto the subject's grid by a given subject -> MNI152 map.

    The classic lesion pipeline's prior placement: ``subject_to_mni`` is the whole-head affine
    (:func:`.pathology_common.whole_head_to_mni`), as SPM12's unified segmentation places its
    tissue probability maps by an affine registration of the whole head (Ashburner & Friston 2005,
    NeuroImage 26:839; its non-linear warp is not re-implemented), rather than
    :func:`tissue_priors`' registration of the MNI152 brain to the masked brain. Each subject
    voxel (grid ``affine``, shape of ``mask``) reads the maps at its MNI152 position (trilinear).
    A placement whose white-matter prior misses the brain is a failure at stage ``registration``.
    """
    _, gm, wm, mni_affine = _mni_maps()
    # subject voxel -> MNI voxel; affine_transform maps output (subject) coordinates to input (MNI) ones
    voxel_map = np.linalg.inv(mni_affine) @ np.asarray(subject_to_mni, float) @ affine
    placed = [
        ndimage.affine_transform(prior, voxel_map[:3, :3], voxel_map[:3, 3], output_shape=mask.shape, order=1)
        for prior in (gm, wm)
    ]
    gm_s, wm_s = (np.clip(np.where(mask, p, 0.0), 0, 1).astype(np.float32) for p in placed)
    if wm_s[mask].mean() < 0.1:
        raise AnalysisFailure("registration", "tissue priors placed by the whole-head affine did not land on the brain")
    return gm_s, wm_s


def tissue_stats(
    flair: np.ndarray, mask: np.ndarray, gm_prior: np.ndarray, wm_prior: np.ndarray, t1: np.ndarray | None = None
) -> TissueStats:
    """Robust FLAIR means of WM and GM, and the WM spread.

    WM: voxels with WM prior > 0.8 (and, given a T1w, T1w above the brain
    median, i.e. not a T1-hypointense lesion or CSF); GM: GM prior > 0.6 and
    FLAIR above the brain's 20th percentile (not CSF). Medians and MAD keep
    lesions, a minority, from moving the statistics. Given a T1w, its median and
    spread in the same white matter too.
    """
    wm_sel = mask & (wm_prior > 0.8)
    if t1 is not None:
        wm_sel &= t1 > np.median(t1[mask])
    if wm_sel.sum() < 500:
        wm_sel = mask & (wm_prior > 0.5)
    floor = np.percentile(flair[mask], 20)
    gm_sel = mask & (gm_prior > 0.6) & (flair > floor)
    if wm_sel.sum() < 100 or gm_sel.sum() < 100:
        raise AnalysisFailure("tissue_classification", "too few white- or grey-matter voxels for tissue statistics")
    wm_mean, wm_sd = _median_spread(flair[wm_sel])
    gm_mean = float(np.median(flair[gm_sel]))
    if wm_sd <= 0:
        raise AnalysisFailure("tissue_classification", "white matter has no intensity spread")
    t1_mean = t1_sd = None
    if t1 is not None:
        t1_mean, t1_sd = _median_spread(t1[wm_sel])
        if t1_sd <= 0:
            raise AnalysisFailure("tissue_classification", "white matter has no T1w intensity spread")
    return TissueStats(wm_mean=wm_mean, gm_mean=max(gm_mean, wm_mean), wm_sd=wm_sd, t1_wm_mean=t1_mean, t1_wm_sd=t1_sd)


def _median_spread(values: np.ndarray) -> tuple[float, float]:
    """Median and the MAD scaled to a normal s.d. (1.4826 x MAD)."""
    median = float(np.median(values))
    return median, float(1.4826 * np.median(np.abs(values - median)))


def belief_map(flair: np.ndarray, mask: np.ndarray, wm_prior: np.ndarray, stats: TissueStats) -> np.ndarray:
    """Lesion belief: FLAIR excess over GM (and WM) means, weighted by the WM prior.

    After Schmidt et al. 2012: a lesion is brighter than both tissues on FLAIR;
    brightness in likely grey matter counts less (cortex and partial volume are
    FLAIR-bright without being lesions).
    """
    z_gm = (flair - stats.gm_mean) / stats.wm_sd
    z_wm = (flair - stats.wm_mean) / stats.wm_sd
    weight = 0.3 + 0.7 * wm_prior
    belief = weight * np.maximum(z_gm, 0.0) + (1.0 - weight) * np.maximum(
        z_wm - (stats.gm_mean - stats.wm_mean) / stats.wm_sd * 1.5, 0.0
    )
    return np.where(mask, belief, 0.0).astype(np.float32)


def surface_depth(mask: np.ndarray, zooms) -> np.ndarray:
    """Distance (mm) from each brain voxel to the brain's outer surface."""
    return ndimage.distance_transform_edt(mask, sampling=zooms).astype(np.float32)


def peak_fraction(z_wm: np.ndarray, mask: np.ndarray, zooms) -> np.ndarray:
    """A voxel's FLAIR excess over white matter as a fraction of the highest nearby.

    ``z_wm`` divided by the maximum, within :data:`PEAK_HALF_WIDTH_MM`, of
    ``z_wm`` smoothed (masked) at :data:`BELIEF_SIGMA_MM`, that maximum at least
    :data:`PEAK_FLOOR`; clipped to [-1, 2]. Near 1 in a lesion's core, 0.5 where
    a voxel holds half lesion (partial volume), and independent of the image's
    noise level, unlike the z scores: a lesion's border taken at half its own
    contrast, as a blob's full width at half maximum. Not part of LST's lpa;
    added here because the z scores alone over-segmented less noisy (thick-slice)
    FLAIRs and cut faint lesions short (``src/defacebench/data/README.md``).
    """
    sigma = [BELIEF_SIGMA_MM / z for z in zooms]
    maskf = mask.astype(np.float32)
    smooth = ndimage.gaussian_filter(np.where(mask, z_wm, 0.0), sigma) / (ndimage.gaussian_filter(maskf, sigma) + 1e-6)
    size = [max(1, int(round(2 * PEAK_HALF_WIDTH_MM / z)) | 1) for z in zooms]
    peak = ndimage.maximum_filter(np.where(mask, smooth, -np.inf), size=size)
    return np.where(mask, np.clip(z_wm / np.maximum(peak, PEAK_FLOOR), -1.0, 2.0), 0.0).astype(np.float32)


def lesion_features(
    flair: np.ndarray,
    mask: np.ndarray,
    gm_prior: np.ndarray,
    wm_prior: np.ndarray,
    zooms,
    stats: TissueStats,
    t1: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The model's feature maps (dict of arrays on the FLAIR grid), keys :data:`FEATURE_NAMES`.

    Given a (bias-corrected, co-registered) ``t1`` and its white-matter statistics in
    ``stats``, keys :data:`T1W_FEATURE_NAMES`.
    """
    sigma_1mm = [BELIEF_SIGMA_MM / z for z in zooms]
    sigma_5mm = [SURROUND_SIGMA_MM / z for z in zooms]
    z_gm = np.clip((flair - stats.gm_mean) / stats.wm_sd, -10, 30)
    z_wm = np.clip((flair - stats.wm_mean) / stats.wm_sd, -10, 30)
    belief = belief_map(flair, mask, wm_prior, stats)
    maskf = mask.astype(np.float32)
    # masked smoothing: average over brain voxels only, so the edge is not dragged to 0
    norm1 = ndimage.gaussian_filter(maskf, sigma_1mm) + 1e-6
    norm5 = ndimage.gaussian_filter(maskf, sigma_5mm) + 1e-6
    belief_smooth = ndimage.gaussian_filter(belief, sigma_1mm) / norm1
    surround = ndimage.gaussian_filter(np.where(mask, z_gm, 0.0), sigma_5mm) / norm5
    depth = np.minimum(surface_depth(mask, zooms), 30.0) / 10.0
    features = {
        "z_gm": z_gm,
        "z_wm": z_wm,
        "belief": belief,
        "belief_smooth": belief_smooth,
        "local_excess": z_gm - surround,
        "wm_prior": wm_prior,
        "depth": depth,
        "belief_x_depth": belief * depth,
        "z_gm_pos_sq": np.minimum(np.maximum(z_gm, 0.0), 10.0) ** 2,
        "peak_fraction": peak_fraction(z_wm, mask, zooms),
    }
    if t1 is not None:
        if stats.t1_wm_sd is None:
            raise ValueError("T1w features need the T1w's white-matter statistics (tissue_stats with t1)")
        t1_dark = np.clip((stats.t1_wm_mean - t1) / stats.t1_wm_sd, -10, 30)
        features["t1_dark"] = t1_dark
        features["t1_dark_smooth"] = ndimage.gaussian_filter(np.where(mask, t1_dark, 0.0), sigma_1mm) / norm1
    return {k: np.where(mask, v, 0.0).astype(np.float32) for k, v in features.items()}


def brain_box(mask: np.ndarray, zooms, postprocessing: dict) -> tuple[slice, ...]:
    """The brain's bounding box, with a margin on which features and post-processing equal the whole grid's.

    Every filter of :func:`lesion_features` and :func:`postprocess` acts on an
    input that is zero outside the brain; the margin
    (:func:`.pathology_common.filter_margin`) is set by the widest of them.
    """
    widest = max(BELIEF_SIGMA_MM, SURROUND_SIGMA_MM, float(postprocessing.get("smooth_sigma_mm", 0.0)))
    margin = filter_margin(widest, zooms)
    # the peak filter reads PEAK_HALF_WIDTH_MM further than the smoothing it filters
    reach = filter_margin(BELIEF_SIGMA_MM, zooms)
    margin = tuple(max(m, r + int(np.ceil(PEAK_HALF_WIDTH_MM / z)) + 1) for m, r, z in zip(margin, reach, zooms))
    return bounding_box(mask, margin=margin)


def feature_matrix(features: dict[str, np.ndarray], mask: np.ndarray, names=FEATURE_NAMES) -> np.ndarray:
    """Rows = brain voxels (C order of ``mask``), columns = ``names`` (:data:`FEATURE_NAMES`)."""
    return np.stack([features[name][mask] for name in names], axis=1)


def linear_predictor(X: np.ndarray, coefficients: dict) -> np.ndarray:
    """eta = b0 + sum_k b_k (x_k - mean_k) / scale_k (float64), rows of ``X`` = voxels."""
    mean = np.asarray(coefficients["feature_mean"], dtype=np.float64)
    scale = np.asarray(coefficients["feature_scale"], dtype=np.float64)
    beta = np.asarray(coefficients["coefficients"], dtype=np.float64)
    return coefficients["intercept"] + ((X - mean) / scale) @ beta


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(eta, -30, 30)))).astype(np.float32)


def logistic_probability(X: np.ndarray, coefficients: dict) -> np.ndarray:
    """p = 1 / (1 + exp(-(b0 + sum_k b_k (x_k - mean_k) / scale_k)))."""
    return _sigmoid(linear_predictor(X, coefficients))


def brain_logit(features: dict[str, np.ndarray], mask: np.ndarray, zooms, coefficients: dict) -> np.ndarray:
    """The model's linear predictor at ``mask``'s voxels (C order), thick-slice shift included.

    The features are taken in the coefficient file's order (``feature_names``); on a thick-slice grid
    (:func:`is_thick`) the intercept moves by ``thick_slice_intercept_shift`` (default 0): a thick
    slice averages a lesion with its surroundings, and the model's operating point, fitted mostly on
    1 mm grids, called too much of them lesion.
    """
    names = tuple(coefficients["feature_names"])
    missing = [name for name in names if name not in features]
    if missing:
        raise ValueError(f"the lesion model needs features {missing} (a T1w model run without a T1w?)")
    if is_thick(zooms):
        coefficients = {
            **coefficients,
            "intercept": coefficients["intercept"] + float(coefficients.get("thick_slice_intercept_shift", 0.0)),
        }
    return linear_predictor(feature_matrix(features, mask, names), coefficients)


def _on_grid(mask: np.ndarray, eta: np.ndarray) -> np.ndarray:
    raw = np.zeros(mask.shape, np.float32)
    raw[mask] = _sigmoid(eta)
    return raw


def raw_probability(features: dict[str, np.ndarray], mask: np.ndarray, zooms, coefficients: dict) -> np.ndarray:
    """The model's lesion probability on ``mask``'s grid (0 outside), before post-processing (:func:`brain_logit`)."""
    return _on_grid(mask, brain_logit(features, mask, zooms, coefficients))


#: LST's lesion definition: p > 0.5, clusters of <= 0.015 ml dropped (the arm's defaults,
#: :mod:`.lesion`; the first pass's load, :func:`lesion_probability`; the fit's Dice).
LST_THRESHOLD, LST_MIN_CLUSTER_ML = 0.5, 0.015


def load_adaptation_shift(first_pass_ml: float, adaptation: dict | None) -> float:
    """Intercept shift for a brain's lesion load: ``slope x ln(first_pass_ml / reference_volume_ml)``.

    A logistic model's intercept holds the log prior odds of lesion in its training sample, and a
    classifier meeting other prior probabilities moves its logit by the change in log prior odds
    (Saerens, Latinne & Decaestecker 2002, Neural Computation 14:21, "Adjusting the outputs of a
    classifier to new a priori probabilities"). Lesion loads differ a hundredfold between patients,
    so one intercept calls too much lesion in a brain with few lesions and too little in one with
    many: on the simulated fitting cohort the model without this found 0.65 ml for 0.54 ml true and
    26.2 ml for 36.2 ml. The load is estimated by the first pass's lesion volume
    (``first_pass_ml``, at least ``min_volume_ml``); ``slope`` 1 moves the logit by the whole log
    ratio of the loads, as the change of prior odds would, and the fit searches 0 to 1; the shift
    is clipped to +-``max_shift``. Fitted with the model (``model_fitting/fit_lesion_model.py``, stage 4);
    0 without ``adaptation`` or with slope 0. Not part of LST's lpa.
    """
    if not adaptation or float(adaptation.get("slope", 0.0)) == 0.0:
        return 0.0
    volume = max(float(first_pass_ml), float(adaptation.get("min_volume_ml", 0.05)))
    shift = float(adaptation["slope"]) * np.log(volume / float(adaptation["reference_volume_ml"]))
    limit = float(adaptation.get("max_shift", 3.0))
    return float(np.clip(shift, -limit, limit))


def grid_load_adaptation(adaptation: dict | None, zooms) -> dict | None:
    """The load adaptation for a grid: on a thick-slice grid (:func:`is_thick`) its ``thick_slice``
    settings, where given, replace the others (fitted on thick-slice subjects alone)."""
    if adaptation and is_thick(zooms) and adaptation.get("thick_slice") is not None:
        return {**adaptation, **adaptation["thick_slice"]}
    return adaptation


def lesion_probability(features: dict[str, np.ndarray], mask: np.ndarray, zooms, coefficients: dict) -> dict:
    """The model's post-processed lesion probability, adapted to the brain's lesion load.

    First pass: :func:`raw_probability` and :func:`postprocess` as fitted. With a
    ``load_adaptation`` in ``coefficients``, the lesion volume of that pass (LST's definition,
    :data:`LST_THRESHOLD`) sets an intercept shift (:func:`load_adaptation_shift`) and the
    second pass gives the result. Returns ``raw``, ``probability``, ``first_pass_ml`` and
    ``load_shift``.
    """
    post = coefficients["postprocessing"]
    eta = brain_logit(features, mask, zooms, coefficients)
    raw = _on_grid(mask, eta)
    probability = postprocess(raw, features, mask, zooms, post)
    adaptation = grid_load_adaptation(coefficients.get("load_adaptation"), zooms)
    if not adaptation or float(adaptation.get("slope", 0.0)) == 0.0:
        return {"raw": raw, "probability": probability, "first_pass_ml": None, "load_shift": 0.0}
    voxel_ml = float(np.prod(zooms)) / 1000.0
    first, _ = lesion_clusters(probability, LST_THRESHOLD, LST_MIN_CLUSTER_ML, voxel_ml)
    first_ml = float(first.sum() * voxel_ml)
    shift = load_adaptation_shift(first_ml, adaptation)
    if shift != 0.0:  # the same model with the intercept moved: the linear predictor is reused
        raw = _on_grid(mask, eta + shift)
        probability = postprocess(raw, features, mask, zooms, post)
    return {"raw": raw, "probability": probability, "first_pass_ml": first_ml, "load_shift": shift}


def postprocess(
    probability: np.ndarray, features: dict[str, np.ndarray], mask: np.ndarray, zooms, params: dict
) -> np.ndarray:
    """LST-style post-processing of the lesion probability map.

    1. light Gaussian smoothing (``smooth_sigma_mm``);
    2. removal of isolated voxels (above threshold with no 26-neighbour above it);
    3. hole filling (enclosed voxels take the threshold's probability);
    4. growth: voxels next to a lesion whose belief exceeds ``grow_belief`` and
       whose probability exceeds ``grow_min_probability`` join it (``grow_iterations`` steps);
    5. half-maximum boundary (``half_maximum_iterations`` > 0, on grids with voxels of at most
       :data:`THICK_SLICE_MM`): lesion voxels below half their neighbourhood's peak
       (``peak_fraction`` < 0.5) and below ``2 x half_maximum_z_min`` leave; voxels next to a
       lesion at or above half the peak and ``half_maximum_z_min`` join (that many steps). The
       border of a lesion is where it holds half the voxel (partial volume), whatever its contrast:
       faint lesions were cut short by the probability threshold.
    6. thick-slice border (``thick_slice_peak_fraction`` > 0, on grids with a voxel longer than
       :data:`THICK_SLICE_MM`): lesion voxels below that fraction of their
       neighbourhood's peak leave; none join. A thick slice through a lesion's edge is bright
       though mostly normal tissue, and the peak itself is diluted by the slice, so this
       fraction lies above one half.

    ``features``: the maps of :func:`lesion_features` (``belief``; ``peak_fraction`` and
    ``z_wm`` for steps 5 and 6).
    """
    belief = features["belief"]
    threshold = params.get("threshold", 0.5)
    p = probability.astype(np.float32)
    if params.get("smooth_sigma_mm", 0) > 0:
        p = ndimage.gaussian_filter(p, [params["smooth_sigma_mm"] / z for z in zooms])
    p = np.where(mask, p, 0.0)
    lesion = p > threshold
    _drop(lesion, p, _isolated(lesion), threshold)
    holes = _holes(lesion) & mask
    p[holes] = np.maximum(p[holes], threshold + 1e-3)
    lesion |= holes
    candidates = mask & (belief > params.get("grow_belief", 2.0)) & (p > params.get("grow_min_probability", 0.1))
    _grow(lesion, p, candidates, int(params.get("grow_iterations", 2)), threshold)
    iterations = int(params.get("half_maximum_iterations", 0))
    if iterations > 0 and not is_thick(zooms):
        half = features["peak_fraction"] >= 0.5
        z_min = float(params["half_maximum_z_min"])
        _drop(lesion, p, lesion & ~half & (features["z_wm"] < 2 * z_min), threshold)
        _grow(lesion, p, mask & half & (features["z_wm"] >= z_min), iterations, threshold)
    thick_fraction = float(params.get("thick_slice_peak_fraction", 0.0))
    if thick_fraction > 0 and is_thick(zooms):
        _drop(lesion, p, lesion & (features["peak_fraction"] < thick_fraction), threshold)
    return p


def _drop(lesion: np.ndarray, p: np.ndarray, voxels: np.ndarray, threshold: float) -> None:
    """In place: ``voxels`` leave ``lesion``, their ``p`` at most half the ``threshold``."""
    p[voxels] = np.minimum(p[voxels], threshold * 0.5)
    lesion &= ~voxels


def _grow(lesion: np.ndarray, p: np.ndarray, candidates: np.ndarray, iterations: int, threshold: float) -> None:
    """In place: ``candidates`` next to ``lesion`` (a face neighbour) join it (up to ``iterations`` steps), their ``p`` just above ``threshold``."""
    for _ in range(iterations):
        voxels = np.flatnonzero(candidates & ~lesion)
        grown = voxels[_touches(lesion, voxels, _FACE_NEIGHBOURS)]
        if grown.size == 0:
            break
        p.flat[grown] = np.maximum(p.flat[grown], threshold + 1e-3)
        lesion.flat[grown] = True


#: Neighbour offsets: the 6 face neighbours (scipy's default structuring element, which growth used) and all 26.
_FACE_NEIGHBOURS = tuple(o for o in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, o)) == 1)
_ALL_NEIGHBOURS = tuple(o for o in itertools.product((-1, 0, 1), repeat=3) if any(o))


def _touches(target: np.ndarray, voxels: np.ndarray, offsets) -> np.ndarray:
    """For flat indices ``voxels`` of ``target``'s grid: whether a neighbour at ``offsets`` is in ``target``.

    Nothing lies outside the grid. The same as a binary dilation read at those voxels, at a cost
    that follows their number rather than the grid's (post-processing runs twice per image).
    """
    shape = target.shape
    padded = np.pad(target, 1).ravel()
    steps = [int(np.dot(o, ((shape[1] + 2) * (shape[2] + 2), shape[2] + 2, 1))) for o in offsets]
    coords = np.unravel_index(voxels, shape)
    flat = np.ravel_multi_index(tuple(c + 1 for c in coords), tuple(n + 2 for n in shape))
    hit = np.zeros(voxels.size, bool)
    for step in steps:
        hit |= padded[flat + step]
    return hit


def _isolated(lesion: np.ndarray) -> np.ndarray:
    """Lesion voxels none of whose 26 neighbours is lesion."""
    voxels = np.flatnonzero(lesion)
    out = np.zeros(lesion.shape, bool)
    out.flat[voxels[~_touches(lesion, voxels, _ALL_NEIGHBOURS)]] = True
    return out


def _holes(lesion: np.ndarray) -> np.ndarray:
    """Voxels outside ``lesion`` that it encloses (``binary_fill_holes`` on the lesions' box only).

    The box has a margin of one voxel, so its faces are background (or the grid's own faces), and
    a voxel is enclosed in the box exactly when it is enclosed in the whole grid.
    """
    out = np.zeros(lesion.shape, bool)
    if lesion.any():
        box = bounding_box(lesion, margin=1)
        out[box] = ndimage.binary_fill_holes(lesion[box]) & ~lesion[box]
    return out


def lesion_clusters(
    probability: np.ndarray, threshold: float, min_cluster_ml: float, voxel_ml: float
) -> tuple[np.ndarray, int]:
    """Binary lesion map at ``probability > threshold`` without clusters of <= ``min_cluster_ml``; and its cluster count."""
    labels, n = ndimage.label(probability > threshold, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros(probability.shape, bool), 0
    sizes = np.bincount(labels.ravel()) * voxel_ml
    keep = sizes > min_cluster_ml + 1e-9
    keep[0] = False
    return keep[labels], int(keep.sum())
