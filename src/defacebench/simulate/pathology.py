"""Lesions and tumours drawn into a subject's tissue labels.

MS white-matter lesions follow their typical sites (Filippi et al. 2016, MAGNIMS
consensus, Lancet Neurol 15:292): periventricular ovoid lesions, often
elongated perpendicular to the ventricles, juxtacortical lesions touching
the cortex, and deep white-matter lesions; most are small. Each is an
irregular ellipsoid kept inside white matter.
A glioblastoma has the compartments BraTS labels (Menze et al. 2015, IEEE TMI
34:1993): a necrotic core inside an enhancing rim, non-enhancing tumour, and
surrounding vasogenic oedema spreading along white matter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..arrays import bounding_box
from .anatomy import GM, WM

#: Tumour labels (BraTS-compatible: core = {1, 3, 4}, whole tumour = {1, 2, 3, 4}).
NECROSIS, OEDEMA, NONENHANCING, ENHANCING = 1, 2, 3, 4


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def blob_local(
    shape,
    centre_vox,
    radii_mm,
    zooms,
    rng: np.random.Generator,
    roughness: float = 0.3,
    rotation: np.ndarray | None = None,
) -> tuple[tuple[slice, ...] | None, np.ndarray | None]:
    """:func:`blob` within its bounding box: ``(box, mask)``, or ``(None, None)`` outside the grid."""
    zooms = np.asarray(zooms, float)
    radii = np.asarray(radii_mm, float)
    rotation = random_rotation(rng) if rotation is None else rotation
    reach = (1 + roughness) * radii.max() * 1.3 / zooms
    lo = np.maximum(np.floor(np.asarray(centre_vox) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre_vox) + reach).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None, None
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    offset_mm = (grid - np.asarray(centre_vox)) * zooms
    local = offset_mm @ rotation  # coordinates along the ellipsoid's axes
    r = np.sqrt(((local / radii) ** 2).sum(-1))
    noise = ndimage.gaussian_filter(rng.standard_normal(r.shape), np.maximum(radii.min() / 3 / zooms, 0.7))
    noise /= max(float(noise.std()), 1e-6)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), r < 1 + roughness * np.clip(noise, -2.5, 2.5)


def blob(
    shape,
    centre_vox,
    radii_mm,
    zooms,
    rng: np.random.Generator,
    roughness: float = 0.3,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """An irregular ellipsoid: radii ``radii_mm`` (3), random orientation, outline modulated by smooth noise.

    Computed in the bounding box only. The noise is smoothed at a third of the
    smallest radius, so the outline is lobulated without scattered fragments.
    """
    out = np.zeros(shape, bool)
    box, local = blob_local(shape, centre_vox, radii_mm, zooms, rng, roughness, rotation)
    if box is not None:
        out[box] = local
    return out


#: Lesion size distribution: log-normal volume (median ml, log s.d.), at least the smallest lesion
#: MAGNIMS counts (>= 3 mm across, Filippi et al. 2016: ~0.015 ml for an ovoid), at most 8 ml.
#: Most MS lesions are small: in MS cohorts the median lesion is a few tens of microlitres and a few
#: large or confluent ones hold much of the volume (the real sample sub-ms07's 37 reference lesions,
#: looked at for diagnosis only, have a median of 0.017 ml). The earlier median of 0.3 ml made
#: lesions few and large, hence easy.
LESION_SIZE_ML = (0.08, 1.3)
LESION_MIN_ML, LESION_MAX_ML = 0.015, 8.0
#: Share of periventricular, juxtacortical and deep white-matter lesions (the rest).
LESION_SITES = (0.55, 0.25)


def white_matter_lesions(
    labels: np.ndarray, ventricle_mm: np.ndarray, zooms, rng: np.random.Generator, total_ml: float
) -> np.ndarray:
    """Periventricular, juxtacortical and deep WM lesions adding up to about ``total_ml``.

    ``ventricle_mm`` is the distance (mm) from the ventricles on the subject
    grid. Lesion sizes are log-normal (:data:`LESION_SIZE_ML`); periventricular
    lesions are elongated ovoids (Dawson's fingers) within 8 mm of a ventricle,
    juxtacortical ones touch the cortex, deep ones lie in between
    (:data:`LESION_SITES`).
    """
    wm = labels == WM
    voxel_ml = float(np.prod(zooms)) / 1000
    periventricular = np.argwhere(wm & (ventricle_mm < 8))
    near_gm = ndimage.binary_dilation(labels == GM, iterations=1)
    juxtacortical = np.argwhere(wm & near_gm & (ventricle_mm > 15))
    deep = np.argwhere(wm & ~near_gm & (ventricle_mm >= 8))
    lesion = np.zeros(labels.shape, bool)
    total = 0.0
    for _ in range(3000):
        if total >= total_ml:
            break
        u = rng.random()
        pool = periventricular if u < LESION_SITES[0] else (juxtacortical if u < sum(LESION_SITES) else deep)
        if len(pool) == 0:
            pool = periventricular if len(periventricular) else juxtacortical
        if len(pool) == 0:
            break
        centre = pool[rng.integers(len(pool))].astype(float)
        size_ml = float(
            np.clip(
                rng.lognormal(np.log(LESION_SIZE_ML[0]), LESION_SIZE_ML[1]),
                LESION_MIN_ML,
                min(LESION_MAX_ML, max(total_ml - total, 0.02) * 1.3),
            )
        )
        radius = (3 * size_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        elongation = rng.uniform(1.3, 2.2) if pool is periventricular else rng.uniform(1.0, 1.5)
        radii = radius * np.array([elongation, 1 / np.sqrt(elongation), 1 / np.sqrt(elongation)])
        box, local = blob_local(labels.shape, centre, np.maximum(radii, 0.8 * max(zooms)), zooms, rng, 0.3)
        if box is None:
            continue
        added = local & wm[box] & ~lesion[box]
        lesion[box] |= added
        total += float(added.sum()) * voxel_ml
    return lesion


#: Probability that a glioma's rim hardly enhances (a small enhancing part only): non- or faintly
#: enhancing high-grade gliomas are not rare (Scott et al. 2002, Neurology 59:947: about a third of
#: non-enhancing supratentorial gliomas were anaplastic), and the real sample sub-gbm7294's reference
#: core shows no enhancement at all (looked at for diagnosis only).
WEAK_ENHANCEMENT_PROBABILITY = 0.3


def glioblastoma(labels: np.ndarray, centre_vox, zooms, rng: np.random.Generator, core_ml: float) -> np.ndarray:
    """A glioblastoma around ``centre_vox``: BraTS-style label map (0 outside).

    Core (about ``core_ml``, confined to brain tissue) = necrosis (an irregular,
    often eccentric region of ~half the radius) inside a rim that enhances in
    part (mostly, or with probability :data:`WEAK_ENHANCEMENT_PROBABILITY` only a
    little), the rest non-enhancing; oedema extends 5-25 mm further, through
    white matter only.
    """
    brain = (labels == GM) | (labels == WM)
    radius = (3 * core_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    rotation = random_rotation(rng)
    stretch = rng.uniform(0.8, 1.25, 3)
    stretch /= np.prod(stretch) ** (1 / 3)
    core = blob(labels.shape, centre_vox, radius * stretch, zooms, rng, 0.3, rotation) & brain
    # necrosis is rarely concentric: shift it by up to a quarter of the radius
    shift = rng.normal(0, 0.12 * radius, 3) / np.asarray(zooms, float)
    necrosis = (
        blob(
            labels.shape,
            np.asarray(centre_vox, float) + shift,
            rng.uniform(0.45, 0.7) * radius * stretch,
            zooms,
            rng,
            0.4,
            rotation,
        )
        & core
    )
    rim = core & ~necrosis
    out = np.zeros(labels.shape, np.uint8)
    if rim.any():
        # part of the rim does not enhance: a smooth random split within the tumour's bounding box
        box = bounding_box(rim)
        split = ndimage.gaussian_filter(rng.standard_normal(rim[box].shape), 3 / min(zooms))
        weak = rng.random() < WEAK_ENHANCEMENT_PROBABILITY
        nonenhancing_share = rng.uniform(0.75, 0.92) if weak else rng.uniform(0.2, 0.45)
        nonenhancing = np.zeros(labels.shape, bool)
        nonenhancing[box] = rim[box] & (split > np.quantile(split[rim[box]], 1 - nonenhancing_share))
        out[nonenhancing] = NONENHANCING
        out[rim & ~nonenhancing] = ENHANCING
    extent = radius + rng.uniform(5, 25)
    oedema = blob(labels.shape, centre_vox, extent * stretch, zooms, rng, 0.35, rotation) & (labels == WM) & ~core
    out[oedema] = OEDEMA
    out[necrosis] = NECROSIS
    return out
