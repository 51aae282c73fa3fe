"""Where the whole tumour should be: FLAIR and T2w hyperintensity against the subject's own brain.

An outlier detector after Prastawa et al. 2004 ("A brain tumor segmentation framework based on
outlier detection", Med Image Anal 8:275-283): the healthy brain's intensities are estimated
robustly from the subject itself, and the tumour with its oedema is the region that is hyperintense
on the T2-weighted images against them, then constrained by its shape. It needs no training, so it
does not share the forest's dependence on how closely simulated gliomas resemble real ones (issue
25: on real BraTS-like scans the forest missed a large tumour with clear FLAIR and T2w signal).

Here the healthy model is the median and MAD of the 2 mm-smoothed FLAIR in each of the T1w's grey
and white classes (multi-level Otsu; a tumour is a minority of each class, so both describe normal
tissue: the robust location and scale Prastawa et al. use in place of the mean and covariance). A
voxel's evidence is the smaller of its robust z against the two (hyperintense on FLAIR against
every healthy class), gated by the T2w (hyperintense on *both*: the BraTS whole tumour is the FLAIR and T2w
hyperintensity, Menze et al. 2015, IEEE TMI 34:1993; CSF is bright on T2w but dark on FLAIR, and a
FLAIR-only artefact, such as a bright rim at a skull-stripping edge, is not bright on T2w). The
region is grown by hysteresis (Canny 1986): voxels above ``grow_z`` connected to a seed above
``seed_z``, which follows oedema that fades into the white matter. Components at the brain's rim or
thinner than a sheet are dropped (the tests of :func:`.tumour_features.select_tumour`), the one with
the most evidence is kept, and enclosed holes (necrosis, dark on FLAIR) are filled.

:func:`reconcile` uses it as a second opinion on the forest's tumour: where the forest's whole tumour
and the hyperintense region barely overlap (or nothing was labelled), the region becomes the
whole tumour and the forest only says which compartment each of its voxels is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..arrays import bounding_box
from .tumour_features import CORE_LABELS, _MaskedSmoother

#: Settings of :func:`hyperintense_region` and :func:`reconcile` (see the module notes).
#: ``min_forest_overlap``: the overlap coefficient (shared volume over the smaller of the two) the
#: forest's whole tumour and the hyperintense region must reach for the forest's labels to stand;
#: ``restrict_mm``: the forest's labels farther than this from the region are dropped (a rim or a
#: sheet joined to the tumour); ``min_ml``: a smaller region is not a tumour candidate. Chosen on the fitting cohort (seed 9001: 8 simulated subjects and their BraTS-like
#: variants; ``seed_z`` 2.5-4, ``grow_z`` 0.5-2, ``t2_min_z`` -99 to 1, ``closing_mm`` 3 or 5,
#: ``restrict_mm`` 5-15), never on the validation subjects or the real scans (docs/validation.md).
HYPERINTENSITY_SETTINGS = {
    "sigma_mm": 2.0,
    "t2_min_z": -1.0,
    "seed_z": 3.0,
    "grow_z": 1.0,
    "rim_mm": 5.0,
    "max_rim_share": 0.5,
    "sheet_mm": 4.0,
    "closing_mm": 3.0,
    "min_ml": 2.0,
    "min_forest_overlap": 0.2,
    "restrict_mm": 15.0,
}


def healthy_classes(t1w: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The brain's grey and white classes on the T1w (bool masks), by 3-class Otsu.

    Multi-level Otsu (Liao et al. 2001, J Inf Sci Eng 17:713) on the T1w inside ``mask`` splits CSF,
    grey and white matter without a model of the sequence's contrasts. Whatever is as dark as grey
    matter on the T1w (oedema) falls in the grey class, as a minority.
    """
    from skimage.filters import threshold_multiotsu

    low, high = threshold_multiotsu(t1w[mask], classes=3)
    return mask & (t1w > low) & (t1w <= high), mask & (t1w > high)


def interior(mask: np.ndarray, zooms, rim_mm: float, depth: np.ndarray | None = None) -> np.ndarray:
    """The brain deeper than ``rim_mm`` below its edge, where the healthy classes are estimated
    (a skull-stripping edge's artefacts would widen their spread); ``mask`` itself when that
    leaves less than a fifth of it. ``depth``: the mask's distance transform, when at hand."""
    if depth is None:
        depth = ndimage.distance_transform_edt(mask, sampling=zooms)
    inside = depth > rim_mm
    return inside if inside.sum() > 0.2 * mask.sum() else mask


def _z(smooth: np.ndarray, mask: np.ndarray, healthy: np.ndarray) -> np.ndarray:
    """Robust z of ``smooth`` against its ``healthy`` voxels: (x - median) / (1.4826 MAD), 0 outside ``mask``.

    The MAD is floored at 1 % of the brain's 1st-99th percentile range, so a flat class does not give
    infinite z. Invariant to any increasing linear map of the intensities (scale and offset).
    """
    values = smooth[healthy]
    median = float(np.median(values))
    low, high = np.percentile(smooth[mask], [1, 99])
    mad = max(1.4826 * float(np.median(np.abs(values - median))), 0.01 * float(high - low), 1e-6)
    return np.where(mask, (smooth - median) / mad, 0.0).astype(np.float32)


def hyperintensity_evidence(
    standardised: dict[str, np.ndarray],
    mask: np.ndarray,
    zooms,
    sigma_mm: float = 2.0,
    t2_min_z: float = -1.0,
    estimate_in: np.ndarray | None = None,
) -> np.ndarray:
    """How far a voxel's FLAIR stands above every healthy tissue class, where its T2w does not fall far below grey matter.

    The 2 mm-smoothed FLAIR's robust z (:func:`_z`) against the grey class and against the white class
    (:func:`healthy_classes`), the smaller of the two: an outlier from each healthy class, as
    Prastawa et al. 2004 define the tumour (CSF is dark on FLAIR; which of grey and white matter is
    brighter differs between FLAIR protocols). A tumour takes a minority of each class's voxels, so
    the classes' medians and MADs stay those of normal tissue. Where the T2w's z against the grey
    class is below ``t2_min_z`` the T2w's z is the evidence if smaller (Menze et al. 2015 draw the
    whole tumour on both; the T2w's contrast between oedema and grey matter is weaker than the
    FLAIR's, so it gates rather than scores). ``estimate_in``: where the healthy classes are
    estimated (default ``mask``; :func:`hyperintense_region` passes :func:`interior`).
    """
    grey, white = healthy_classes(standardised["T1w"], mask if estimate_in is None else estimate_in)
    smoother = _MaskedSmoother(mask, zooms)
    flair = smoother(standardised["FLAIR"], sigma_mm)
    classes = [c for c in (grey, white) if c.sum() >= 1000] or [mask]
    flair_z = np.minimum.reduce([_z(flair, mask, c) for c in classes])
    t2 = _z(smoother(standardised["T2w"], sigma_mm), mask, classes[0])
    return np.where(t2 >= t2_min_z, flair_z, np.minimum(flair_z, t2)).astype(np.float32)


def enhancement_evidence(standardised: dict[str, np.ndarray], mask: np.ndarray, zooms, sigma_mm: float = 1.0):
    """Gadolinium enhancement against the healthy brain: robust z of the smoothed ceT1w - T1w.

    The difference of the two standardised images (each relative to its own white matter), against
    its median and MAD over the grey and white classes more than 5 mm inside the brain
    (:func:`healthy_classes`; vessels and the choroid plexus, which enhance, are a minority there).
    """
    smoother = _MaskedSmoother(mask, zooms)
    difference = smoother(standardised["ceT1w"] - standardised["T1w"], sigma_mm)
    grey, white = healthy_classes(standardised["T1w"], interior(mask, zooms, HYPERINTENSITY_SETTINGS["rim_mm"]))
    healthy = grey | white
    return _z(difference, mask, healthy if healthy.sum() >= 1000 else mask)


def _box_around(region: np.ndarray, zooms, radius_mm: float) -> tuple[slice, ...]:
    """The box of ``region`` widened by ``radius_mm`` and two voxels: distances up to ``radius_mm``
    from the region, and a background layer around them, are all inside it (the distance transforms
    below run on this box rather than on the whole brain's)."""
    return bounding_box(region, [int(np.ceil(radius_mm / z)) + 2 for z in zooms])


def closing(region: np.ndarray, zooms, radius_mm: float) -> np.ndarray:
    """Morphological closing of ``region`` by a ball of ``radius_mm`` (Euclidean distances, anisotropic voxels)."""
    if radius_mm <= 0 or not region.any():
        return region
    box = _box_around(region, zooms, radius_mm)
    dilated = ndimage.distance_transform_edt(~region[box], sampling=zooms) <= radius_mm
    out = np.zeros_like(region)
    out[box] = ndimage.distance_transform_edt(dilated, sampling=zooms) > radius_mm
    return out


def within(region: np.ndarray, zooms, radius_mm: float) -> np.ndarray:
    """The voxels within ``radius_mm`` of ``region`` (bool; none when ``region`` is empty)."""
    out = np.zeros(region.shape, bool)
    if region.any():
        box = _box_around(region, zooms, radius_mm)
        out[box] = ndimage.distance_transform_edt(~region[box], sampling=zooms) <= radius_mm
    return out


def hyperintense_region(
    standardised: dict[str, np.ndarray], mask: np.ndarray, zooms, settings: dict | None = None
) -> tuple[np.ndarray, list[dict]]:
    """The most FLAIR- and T2w-hyperintense compact region of the brain (bool), and every candidate's measures.

    Empty when no component passes (nothing above ``seed_z``, or only rims, sheets and specks).
    """
    s = {**HYPERINTENSITY_SETTINGS, **(settings or {})}
    zooms = tuple(float(z) for z in zooms)
    depth = ndimage.distance_transform_edt(mask, sampling=zooms)
    evidence = hyperintensity_evidence(
        standardised, mask, zooms, s["sigma_mm"], s["t2_min_z"], interior(mask, zooms, s["rim_mm"], depth)
    )
    grown = mask & (evidence >= s["grow_z"])
    components, n = ndimage.label(grown, structure=np.ones((3, 3, 3)))
    seeded = np.zeros(n + 1, bool)
    seeded[np.unique(components[mask & (evidence >= s["seed_z"])])] = True
    seeded[0] = False
    region = closing(seeded[components], zooms, s["closing_mm"]) & mask
    measures: list[dict] = []
    if not region.any():
        return region, measures
    components, n = ndimage.label(region, structure=np.ones((3, 3, 3)))
    rim = depth <= s["rim_mm"]
    voxel_ml = float(np.prod(zooms)) / 1000.0
    best, best_score, best_filled = 0, 0.0, None
    for k, sl in enumerate(ndimage.find_objects(components), start=1):
        here = components[sl] == k
        # necrosis and an enhancing rim are not FLAIR-hyperintense against grey matter, but are
        # enclosed by what is (once the oedema's shell is closed over gaps of up to 2 closing_mm);
        # the rim share is judged before the filling, which would fill a closed rim's whole brain
        filled = ndimage.binary_fill_holes(here) & mask[sl]
        ml = float(filled.sum()) * voxel_ml
        rim_share = float(rim[sl][here].mean())
        thickness = 2.0 * float(
            ndimage.distance_transform_edt(np.pad(filled, 1), sampling=zooms)[1:-1, 1:-1, 1:-1][filled].mean()
        )
        score = float(np.clip(evidence[sl][filled], 0, None).sum()) * voxel_ml
        ok = ml >= s["min_ml"] and rim_share <= s["max_rim_share"] and thickness >= s["sheet_mm"]
        measures.append(
            {
                "ml": round(ml, 2),
                "rim_share": round(rim_share, 3),
                "thickness_mm": round(thickness, 2),
                "score": round(score, 1),
                "candidate": bool(ok),
            }
        )
        if ok and score > best_score:
            best, best_score, best_filled = k, score, (sl, filled)
    for k, m in enumerate(measures, start=1):
        m["kept"] = k == best
    out = np.zeros_like(region)
    if best:
        sl, filled = best_filled
        out[sl] = filled
    return out, measures


def reconcile(
    labels: np.ndarray,
    posteriors: np.ndarray,
    classes,
    region: np.ndarray,
    zooms,
    sigma_mm: float = 1.0,
    settings: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """The forest's ``labels``, or the hyperintense ``region`` labelled with the forest's compartments.

    The forest's labels stand, less those farther than ``restrict_mm`` from ``region``, when its
    whole tumour and ``region`` overlap by at least ``min_forest_overlap`` of the smaller of the two
    (the overlap coefficient: a forest tumour inside a larger region, or a region inside a larger
    forest tumour, agree), or ``region`` is empty.
    Otherwise every voxel of ``region`` gets the tumour class (labels 1-4) with the highest
    ``sigma_mm``-smoothed posterior among the tumour classes: the forest decides the compartment, not
    whether there is tumour. Returns (labels, record) with ``source`` (``forest`` or
    ``hyperintensity``), the region's volume, the overlap coefficient and the volume of the
    forest's labels dropped as too far from it.
    """
    s = {**HYPERINTENSITY_SETTINGS, **(settings or {})}
    voxel_ml = float(np.prod(zooms)) / 1000.0
    region_voxels = int(region.sum())
    forest_voxels = int((labels > 0).sum())
    shared = int((labels[region] > 0).sum())
    overlap = shared / min(region_voxels, forest_voxels) if region_voxels and forest_voxels else 0.0
    record = {
        "hyperintense_ml": round(region_voxels * voxel_ml, 2),
        "forest_overlap": round(overlap, 3),
        "source": "forest",
    }
    if not region_voxels:
        return labels, record
    if overlap >= s["min_forest_overlap"]:
        far = (labels > 0) & ~within(region, zooms, s["restrict_mm"])
        record["dropped_ml"] = round(float(far.sum()) * voxel_ml, 2)
        return np.where(far, 0, labels).astype(labels.dtype), record
    classes = np.asarray(classes)
    tumour_k = np.flatnonzero(classes > 0)
    sigma = [sigma_mm / z for z in zooms]
    smoothed = np.stack([ndimage.gaussian_filter(posteriors[..., k], sigma)[region] for k in tumour_k], axis=-1)
    out = np.zeros_like(labels)
    out[region] = classes[tumour_k][np.argmax(smoothed, axis=-1)].astype(labels.dtype)
    record["source"] = "hyperintensity"
    record["core_ml"] = round(float(np.isin(out, CORE_LABELS).sum()) * voxel_ml, 2)
    return out, record
