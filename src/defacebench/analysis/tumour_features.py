"""Voxel features and spatial regularisation of the tumour arm, after BraTumIA.

Porz N. et al. 2014, "Multi-modal glioblastoma segmentation: man versus
machine", PLoS One 9:e96873; Meier R. et al. 2016, "Clinical evaluation of a
fully-automatic segmentation method for longitudinal brain tumor volumetry",
Sci Rep 6:23376; the classifier of Bauer/Meier et al. (decision forest on
multi-modal intensity and neighbourhood features, then a CRF). Here: intensity
of each standardised modality, Gaussian-smoothed intensities at two scales,
local spread, local contrast against a wider neighbourhood, the gadolinium
enhancement (ceT1w - T1w), and depth below the brain surface; the CRF is
approximated by smoothing the class posteriors before the arg-max and by
connected-component clean-up.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Tumour labels (BraTS-compatible: core = {1, 3, 4}).
LABELS = {0: "background", 1: "necrosis", 2: "oedema", 3: "non-enhancing", 4: "enhancing"}
CORE_LABELS = (1, 3, 4)
MODALITY_ORDER = ("T1w", "ceT1w", "T2w", "FLAIR")
PER_MODALITY = ("raw", "smooth1", "smooth3", "sd2", "contrast8")


def feature_names() -> tuple[str, ...]:
    names = [f"{m}_{f}" for m in MODALITY_ORDER for f in PER_MODALITY]
    return tuple(names + ["enhancement", "enhancement_smooth2", "depth"])


FEATURE_NAMES = feature_names()


class _MaskedSmoother:
    """Gaussian smoothing inside a mask (normalised convolution: Knutsson & Westin 1993, CVPR 515-523).

    The mask's own smoothed weight is the same for every image smoothed at one
    width, so it is computed once per width.
    """

    def __init__(self, mask: np.ndarray, zooms):
        self.maskf = mask.astype(np.float32)
        self.zooms = zooms
        self._weights = {}

    def __call__(self, data: np.ndarray, sigma_mm: float) -> np.ndarray:
        sigma = [sigma_mm / z for z in self.zooms]
        if sigma_mm not in self._weights:
            self._weights[sigma_mm] = ndimage.gaussian_filter(self.maskf, sigma) + 1e-6
        return ndimage.gaussian_filter(data * self.maskf, sigma) / self._weights[sigma_mm]


def tumour_features(standardised: dict[str, np.ndarray], mask: np.ndarray, zooms) -> dict[str, np.ndarray]:
    """Feature maps (keys :data:`FEATURE_NAMES`) from standardised modalities on one grid."""
    smooth = _MaskedSmoother(mask, zooms)
    out = {}
    for m in MODALITY_ORDER:
        x = standardised[m]
        s1 = smooth(x, 1.0)
        s2 = smooth(x, 2.0)
        sq2 = smooth(x * x, 2.0)
        out[f"{m}_raw"] = x
        out[f"{m}_smooth1"] = s1
        out[f"{m}_smooth3"] = smooth(x, 3.0)
        out[f"{m}_sd2"] = np.sqrt(np.maximum(sq2 - s2 * s2, 0.0))
        out[f"{m}_contrast8"] = s1 - smooth(x, 8.0)
    enhancement = standardised["ceT1w"] - standardised["T1w"]
    out["enhancement"] = enhancement
    out["enhancement_smooth2"] = smooth(enhancement, 2.0)
    out["depth"] = np.minimum(ndimage.distance_transform_edt(mask, sampling=zooms), 40.0) / 10.0
    return {k: np.where(mask, v, 0.0).astype(np.float32) for k, v in out.items()}


def feature_matrix(features: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Rows = brain voxels (C order of ``mask``), columns = :data:`FEATURE_NAMES`."""
    return np.stack([features[name][mask] for name in FEATURE_NAMES], axis=1)


def regularise(
    posteriors: np.ndarray,
    classes,
    mask: np.ndarray,
    zooms,
    sigma_mm: float = 1.0,
    min_tumour_ml: float = 0.5,
    largest_component_only: bool = False,
) -> np.ndarray:
    """Label map from voxel-wise class posteriors with spatial regularisation.

    Stands in for BraTumIA's conditional random field: posteriors are smoothed
    (``sigma_mm``) so that a voxel's label agrees with its neighbours', then the
    arg-max is taken; whole-tumour components smaller than ``min_tumour_ml`` or
    without any tumour core are dropped (isolated false positives); with
    ``largest_component_only`` only the largest whole-tumour component stays
    (one tumour per patient: the connected-component post-processing nnU-Net
    adopts when it raises the cross-validated Dice, Isensee et al. 2021, Nat
    Methods 18:203; it drops the satellites of a multifocal glioma, so it is a
    model setting chosen on the fitting cohort, see ``model_fitting/fit_tumour_model.py``);
    holes inside the tumour are filled with the surrounding majority tumour label.
    """
    sigma = [sigma_mm / z for z in zooms]
    smoothed = np.stack(
        [ndimage.gaussian_filter(posteriors[..., k], sigma) for k in range(posteriors.shape[-1])], axis=-1
    )
    labels = np.asarray(classes)[np.argmax(smoothed, axis=-1)].astype(np.uint8)
    labels[~mask] = 0
    tumour = labels > 0
    components, n = ndimage.label(tumour, structure=np.ones((3, 3, 3)))
    if n:
        voxel_ml = float(np.prod(zooms)) / 1000.0
        sizes = np.bincount(components.ravel()) * voxel_ml
        core = np.isin(labels, CORE_LABELS)
        core_sizes = np.bincount(components.ravel(), weights=core.ravel().astype(float), minlength=n + 1) * voxel_ml
        keep = (sizes >= min_tumour_ml) & (core_sizes >= min_tumour_ml * 0.2)
        keep[0] = False
        if largest_component_only and keep.any():
            keep = np.arange(n + 1) == np.argmax(np.where(keep, sizes, -1.0))
        labels[~keep[components]] = 0
    # fill enclosed holes: inside the tumour, a background voxel is tumour whose label was smoothed away
    tumour = labels > 0
    holes = ndimage.binary_fill_holes(tumour) & ~tumour & mask
    if holes.any():
        core = np.isin(labels, CORE_LABELS)
        holes_core = holes & ndimage.binary_fill_holes(core)
        labels[holes_core] = np.uint8(1)  # enclosed by core: necrosis-like (BraTS convention)
        labels[holes & ~holes_core] = np.uint8(2)
    return labels


#: Component selection (issue 25; :func:`select_tumour`): a glioma is one or a few compact regions of
#: the brain that are hyperintense on FLAIR against the subject's own normal tissue (Menze et al. 2015:
#: the whole tumour is the FLAIR hyperintensity), not the brain's rim nor a sheet along the midline.
#: ``evidence_z``: the lowest robust z of a component's FLAIR (75th percentile over its non-necrotic
#: voxels) for it to count as a tumour; ``rim_mm`` / ``max_rim_share``: a component with more than this
#: share of its voxels within ``rim_mm`` of the brain's edge is the rim, not a tumour; ``rim_peel_z``:
#: non-necrotic voxels within ``rim_mm`` of the edge with a lower FLAIR z, and not within ``rim_mm``
#: of tumour with FLAIR z >= ``evidence_z``, are not tumour (the cortex and the skull-stripping
#: edge); ``sheet_mm``: a component whose mean thickness (twice its voxels' mean
#: depth inside it) is below this is a sheet (falx, septum, ventricle walls).
SELECTION_SETTINGS = {
    "evidence_z": 2.0,
    "rim_mm": 5.0,
    "max_rim_share": 0.5,
    "rim_peel_z": 2.0,
    "sheet_mm": 4.0,
}


def flair_evidence(standardised: dict[str, np.ndarray], mask: np.ndarray, zooms) -> np.ndarray:
    """FLAIR hyperintensity against the subject's own brain: robust z of the 2 mm-smoothed FLAIR.

    z = (FLAIR - median) / (1.4826 MAD) over the brain mask (the MAD floored at 5 % of the median),
    so it does not depend on the image's scale, on the white-matter reference, or on how much
    tumour the brain holds (a tumour is a minority of the brain's voxels).
    """
    flair = _MaskedSmoother(mask, zooms)(standardised["FLAIR"], 2.0)
    values = flair[mask]
    median = float(np.median(values))
    mad = max(1.4826 * float(np.median(np.abs(values - median))), 0.05 * abs(median), 1e-6)
    return np.where(mask, (flair - median) / mad, 0.0).astype(np.float32)


def select_tumour(
    labels: np.ndarray,
    evidence: np.ndarray,
    mask: np.ndarray,
    zooms,
    settings: dict | None = None,
    largest_component_only: bool = True,
) -> tuple[np.ndarray, list[dict]]:
    """The tumour components of ``labels`` that look like a glioma (:data:`SELECTION_SETTINGS`).

    Voxels at the brain's rim without FLAIR hyperintensity are dropped first; then each whole-tumour
    component (26-connected) is measured: FLAIR evidence (75th percentile of ``evidence`` over its
    non-necrotic voxels), its share within ``rim_mm`` of the edge, its mean thickness. Components
    failing a test are dropped; of the rest, with ``largest_component_only``, the one with the most
    hyperintense signal (sum of positive z) stays, which is the largest on a clean segmentation and
    the tumour rather than a larger artefact on a poor one. Returns (labels, per-component measures).
    """
    s = {**SELECTION_SETTINGS, **(settings or {})}
    labels = labels.copy()
    depth = ndimage.distance_transform_edt(mask, sampling=zooms)
    rim = mask & (depth <= s["rim_mm"])
    # the peel spares necrosis (dark on FLAIR wherever it is: judged with its component) and the
    # tumour within rim_mm of FLAIR-hyperintense tumour (a tumour reaching the cortex, whose edge
    # mixes with the CSF outside)
    strong = (labels > 0) & (evidence >= s["evidence_z"])
    near_strong = ndimage.distance_transform_edt(~strong, sampling=zooms) <= s["rim_mm"] if strong.any() else strong
    labels[rim & (labels > 1) & (evidence < s["rim_peel_z"]) & ~near_strong] = 0
    components, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    measures = []
    if not n:
        return labels, measures
    inner_depth = ndimage.distance_transform_edt(components > 0, sampling=zooms)
    keep = np.zeros(n + 1, bool)
    score = np.zeros(n + 1)
    for k, sl in enumerate(ndimage.find_objects(components), start=1):
        here = components[sl] == k
        lab = labels[sl][here]
        ev = evidence[sl][here]
        solid = lab != 1
        z75 = float(np.percentile(ev[solid] if solid.any() else ev, 75))
        rim_share = float(rim[sl][here].mean())
        thickness = 2.0 * float(inner_depth[sl][here].mean())
        ok = z75 >= s["evidence_z"] and rim_share <= s["max_rim_share"] and thickness >= s["sheet_mm"]
        keep[k] = ok
        score[k] = float(np.clip(ev, 0, None).sum())
        measures.append(
            {
                "voxels": int(here.sum()),
                "flair_z75": round(z75, 2),
                "rim_share": round(rim_share, 3),
                "thickness_mm": round(thickness, 2),
                "kept": bool(ok),
            }
        )
    if largest_component_only and keep.any():
        keep = np.arange(n + 1) == np.argmax(np.where(keep, score, -1.0))
        for k, m in enumerate(measures, start=1):
            m["kept"] = bool(keep[k])
    labels[~keep[components]] = 0
    return labels, measures
