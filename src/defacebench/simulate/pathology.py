"""Lesions and tumours drawn into a subject's tissue labels.

MS white-matter lesions follow their typical sites (Filippi et al. 2016, MAGNIMS
consensus, Lancet Neurol 15:292): periventricular ovoid lesions, often
elongated perpendicular to the ventricles, and juxtacortical lesions touching
the cortex; each is an irregular ellipsoid kept inside white matter.
A glioblastoma has the compartments BraTS labels (Menze et al. 2015, IEEE TMI
34:1993): a necrotic core inside an enhancing rim, non-enhancing tumour, and
surrounding vasogenic oedema spreading along white matter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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


def blob(shape, centre_vox, radii_mm, zooms, rng: np.random.Generator, roughness: float = 0.3,
         rotation: np.ndarray | None = None) -> np.ndarray:
    """An irregular ellipsoid: radii ``radii_mm`` (3), random orientation, outline modulated by smooth noise.

    Computed in the bounding box only. The noise is smoothed at a third of the
    smallest radius, so the outline is lobulated without scattered fragments.
    """
    zooms = np.asarray(zooms, float)
    radii = np.asarray(radii_mm, float)
    rotation = random_rotation(rng) if rotation is None else rotation
    reach = (1 + roughness) * radii.max() * 1.3 / zooms
    lo = np.maximum(np.floor(np.asarray(centre_vox) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre_vox) + reach).astype(int) + 1, shape)
    out = np.zeros(shape, bool)
    if np.any(hi <= lo):
        return out
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    offset_mm = (grid - np.asarray(centre_vox)) * zooms
    local = offset_mm @ rotation  # coordinates along the ellipsoid's axes
    r = np.sqrt(((local / radii) ** 2).sum(-1))
    noise = ndimage.gaussian_filter(rng.standard_normal(r.shape), np.maximum(radii.min() / 3 / zooms, 0.7))
    noise /= max(float(noise.std()), 1e-6)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = r < 1 + roughness * np.clip(noise, -2.5, 2.5)
    return out


def white_matter_lesions(labels: np.ndarray, ventricle_mm: np.ndarray, zooms, rng: np.random.Generator,
                         total_ml: float) -> np.ndarray:
    """Periventricular (2/3) and juxtacortical (1/3) WM lesions adding up to about ``total_ml``.

    ``ventricle_mm`` is the distance (mm) from the ventricles on the subject
    grid. Lesion sizes are log-normal (median 0.3 ml); periventricular lesions
    are elongated (Dawson's fingers) and sit within 8 mm of a ventricle,
    juxtacortical ones touch the cortex.
    """
    wm = labels == WM
    voxel_ml = float(np.prod(zooms)) / 1000
    periventricular = np.argwhere(wm & (ventricle_mm < 8))
    near_gm = ndimage.binary_dilation(labels == GM, iterations=1)
    juxtacortical = np.argwhere(wm & near_gm & (ventricle_mm > 15))
    lesion = np.zeros(labels.shape, bool)
    total = 0.0
    for _ in range(500):
        if total >= total_ml:
            break
        pool = periventricular if (rng.random() < 0.67 and len(periventricular)) else juxtacortical
        if len(pool) == 0:
            break
        centre = pool[rng.integers(len(pool))].astype(float)
        size_ml = min(rng.lognormal(np.log(0.3), 1.0), max(total_ml - total, 0.02) * 1.3, 8.0)
        radius = (3 * size_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        elongation = rng.uniform(1.3, 2.2) if pool is periventricular else rng.uniform(1.0, 1.5)
        radii = radius * np.array([elongation, 1 / np.sqrt(elongation), 1 / np.sqrt(elongation)])
        lesion |= blob(labels.shape, centre, np.maximum(radii, 0.8 * max(zooms)), zooms, rng, 0.3) & wm
        total = float(lesion.sum()) * voxel_ml
    return lesion


def glioblastoma(labels: np.ndarray, centre_vox, zooms, rng: np.random.Generator, core_ml: float) -> np.ndarray:
    """A glioblastoma around ``centre_vox``: BraTS-style label map (0 outside).

    Core (about ``core_ml``, confined to brain tissue) = necrosis (the inner
    ~half of the radius) inside a rim that mostly enhances, with a
    non-enhancing part; oedema extends 5-25 mm further, through white matter only.
    """
    brain = (labels == GM) | (labels == WM)
    radius = (3 * core_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    rotation = random_rotation(rng)
    stretch = rng.uniform(0.8, 1.25, 3)
    stretch /= np.prod(stretch) ** (1 / 3)
    core = blob(labels.shape, centre_vox, radius * stretch, zooms, rng, 0.2, rotation) & brain
    necrosis = blob(labels.shape, centre_vox, rng.uniform(0.45, 0.7) * radius * stretch, zooms, rng, 0.3,
                    rotation) & core
    rim = core & ~necrosis
    out = np.zeros(labels.shape, np.uint8)
    if rim.any():
        # part of the rim does not enhance: a smooth random split within the tumour's bounding box
        box = ndimage.find_objects(rim.astype(np.uint8))[0]
        split = ndimage.gaussian_filter(rng.standard_normal(rim[box].shape), 3 / min(zooms))
        nonenhancing = np.zeros(labels.shape, bool)
        nonenhancing[box] = rim[box] & (split > np.quantile(split[rim[box]], rng.uniform(0.55, 0.8)))
        out[nonenhancing] = NONENHANCING
        out[rim & ~nonenhancing] = ENHANCING
    extent = radius + rng.uniform(5, 25)
    oedema = blob(labels.shape, centre_vox, extent * stretch, zooms, rng, 0.35, rotation) & (labels == WM) & ~core
    out[oedema] = OEDEMA
    out[necrosis] = NECROSIS
    return out
