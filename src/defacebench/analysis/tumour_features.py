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
