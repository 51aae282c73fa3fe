"""Normal structures that look like pathology: FLAIR-bright non-lesions and normally enhancing tissue.

Real FLAIR images of healthy brains hold hyperintensities that are not
lesions, and lesion segmentation tools are known to be fooled by them
(Neema et al. 2009, AJNR 30:911, "Normal findings on brain FLAIR MR images at
3T"; "Fast FLAIR of the brain: the range of appearances in normal subjects",
Neuroradiology 1997, 39:243: caps at the frontal horns in 90 % and at the
occipital horns in 77 % of healthy volunteers): periventricular caps at the tips of the frontal and occipital horns and
a pencil-thin periventricular lining (Fazekas et al. 1987, AJR 149:351, grade 1;
histologically loosely packed fibres with ependymitis granularis, Sze et al.
1986, AJNR 7:381), and intraventricular CSF pulsation artefacts (incompletely
nulled inflowing CSF; Bakshi et al. 2000, AJNR 21:503, seen in most normal
fast-FLAIR studies). The choroid plexus lies in the lateral ventricles (glomus
in the atrium, the widest part), is intermediate on FLAIR and enhances
strongly after gadolinium because it has no blood-brain barrier.

Measured on the real sample sub-ms07 before this module existed (diagnosis only,
nothing is fitted on it): the lesion arm's false positives lay at a median
1 mm from the ventricles, at the horn tips, the atria and the midline, at 1.5-1.8 x
the white-matter FLAIR signal; the simulated training data had no such
structures, so the model never saw a bright non-lesion next to a ventricle.

These change image intensity only: the tissue labels (and so every truth
volume) are unchanged; the caps count as the tissue they lie in, the choroid
plexus and the flow artefacts as ventricular CSF.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..arrays import bounding_box
from .anatomy import CSF, GM, WM

#: Pencil-thin lining thickness (mm) and extra thickness of a cap at a horn tip (mm), per subject.
LINING_MM = (0.3, 1.2)
CAP_MM = (2.0, 6.0)
#: The caps sit on this most convex fraction of the ventricular wall (the horn tips).
TIP_QUANTILE = 0.1
#: Choroid plexus volume (ml, both sides; adult volumes are ~1-3 ml per side).
CHOROID_ML = (1.5, 5.0)
#: Probability that a subject's FLAIR shows intraventricular CSF pulsation artefacts.
FLOW_ARTEFACT_PROBABILITY = 0.7


def smooth_field(shape, sigma_vox, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit s.d. (patchiness of a structure)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return field / max(float(field.std()), 1e-6)


def normal_mimics(
    labels: np.ndarray, ventricle_mm: np.ndarray, enlargement_mm: float, zooms, rng: np.random.Generator
) -> dict:
    """Weights (0..1, float32) of the periventricular caps/lining, choroid plexus and CSF flow artefacts.

    ``ventricle_mm`` is the distance from the template's lateral ventricles; the
    subject's ventricles are the voxels within ``enlargement_mm`` of them (see
    :func:`defacebench.simulate.subject.tissue_labels`). Everything is computed in
    the ventricles' bounding box (plus a margin) and returned as ``box`` + maps.
    """
    zooms = np.asarray(zooms, float)
    ventricle = (labels == CSF) & (ventricle_mm < enlargement_mm)
    margin = int(np.ceil(12 / zooms.min()))
    if not ventricle.any():
        return {}
    box = bounding_box(ventricle, margin)
    vent = ventricle[box]
    brain = np.isin(labels[box], (GM, WM))
    shape = vent.shape
    # -- caps and lining: thin at a flat wall, thick where the wall is convex (the horn tips sit where
    #    only a small part of the surroundings is ventricle)
    #    (the most convex tenth of the wall: caps are focal, Fazekas grade 1, not a halo)
    fraction = ndimage.gaussian_filter(vent.astype(np.float32), 4.0 / zooms)
    outside = np.maximum(ventricle_mm[box] - enlargement_mm, 0.0)
    wall = brain & (outside < 1.5)
    level = np.quantile(fraction[wall], TIP_QUANTILE) if wall.any() else 0.0
    tip = ndimage.gaussian_filter((wall & (fraction <= level)).astype(np.float32), 2.0 / zooms)
    patchy = np.clip(1.0 + 0.4 * smooth_field(shape, 6.0 / zooms, rng), 0.3, 1.7)
    thickness = (rng.uniform(*LINING_MM) + rng.uniform(*CAP_MM) * np.clip(tip * 3.0, 0, 1)) * patchy
    caps = np.where(brain, np.clip(1.0 - outside / np.maximum(thickness, 0.3), 0.0, 1.0), 0.0)
    # -- choroid plexus: the deepest (widest) parts of the ventricles, lobulated
    inner = ndimage.distance_transform_edt(vent, sampling=zooms)
    score = np.where(
        vent, inner / max(float(inner.max()), 1e-6) + 0.25 * smooth_field(shape, 1.5 / zooms, rng), -np.inf
    )
    voxel_ml = float(np.prod(zooms)) / 1000
    n_choroid = min(int(rng.uniform(*CHOROID_ML) / voxel_ml), int(vent.sum() * 0.3))
    choroid = np.zeros(shape, np.float32)
    if n_choroid > 0:
        cut = np.partition(score[vent], -n_choroid)[-n_choroid]
        choroid[vent & (score >= cut)] = 1.0
    # -- CSF pulsation artefacts: patches of unsuppressed CSF inside the ventricles (FLAIR only)
    flow = np.zeros(shape, np.float32)
    if rng.random() < FLOW_ARTEFACT_PROBABILITY:
        field = smooth_field(shape, 2.5 / zooms, rng)
        level = np.quantile(field[vent], rng.uniform(0.85, 0.97)) if vent.any() else np.inf
        flow = np.where(vent & (choroid == 0), np.clip((field - level) / 0.5, 0.0, 1.0), 0.0).astype(np.float32)
    return {"box": box, "caps": caps.astype(np.float32), "choroid": choroid, "flow": flow}
