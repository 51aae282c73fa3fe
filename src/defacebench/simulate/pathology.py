"""Lesions and tumours drawn into a subject's tissue labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import CSF, GM, WM

NECROSIS, OEDEMA, NONENHANCING, ENHANCING = 1, 2, 3, 4


def _blob(shape, centre, radius_vox, rng, roughness=0.35):
    """An irregular blob: a sphere whose radius is modulated by smooth noise."""
    lo = np.maximum(np.floor(centre - 1.6 * radius_vox).astype(int), 0)
    hi = np.minimum(np.ceil(centre + 1.6 * radius_vox).astype(int) + 1, shape)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    r = np.sqrt((((grid - centre) / radius_vox) ** 2).sum(-1))
    # smooth at a third of the radius: lobulated outline, no scattered fragments
    noise = ndimage.gaussian_filter(rng.normal(0, 1, r.shape), np.maximum(np.asarray(radius_vox) / 3, 1.0))
    noise /= max(noise.std(), 1e-6)
    out = np.zeros(shape, bool)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = r < 1 + roughness * noise
    return out


def white_matter_lesions(labels: np.ndarray, zooms, rng, total_ml: float) -> np.ndarray:
    """Periventricular and juxtacortical WM lesions adding up to about ``total_ml``.

    Seeds are WM voxels next to the ventricles (periventricular, 2/3 of lesions)
    or next to cortex (juxtacortical); each lesion is an irregular blob kept
    inside white matter.
    """
    wm = labels == WM
    voxel_ml = float(np.prod(zooms)) / 1000
    near_csf = wm & ndimage.binary_dilation(labels == CSF, iterations=max(1, int(3 / zooms[0])))
    # deep CSF (ventricles): CSF far from the brain's outer surface
    brain = labels > 0
    depth = ndimage.distance_transform_edt(ndimage.binary_fill_holes(brain & (labels != 4)), sampling=zooms)
    periventricular = np.argwhere(near_csf & (depth > 25))
    juxtacortical = np.argwhere(wm & ndimage.binary_dilation(labels == GM, iterations=1) & (depth > 8))
    lesion = np.zeros(labels.shape, bool)
    for _ in range(400):
        if lesion.sum() * voxel_ml >= total_ml:
            break
        pool = periventricular if (rng.random() < 0.67 and len(periventricular)) else juxtacortical
        if len(pool) == 0:
            break
        centre = pool[rng.integers(len(pool))].astype(float)
        size_ml = min(rng.lognormal(np.log(0.4), 0.9), max(total_ml - lesion.sum() * voxel_ml, 0.05) * 1.2)
        radius_mm = (3 * size_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        lesion |= _blob(labels.shape, centre, radius_mm / np.asarray(zooms), rng) & wm
    return lesion


def glioblastoma(labels: np.ndarray, zooms, rng, core_ml: float) -> np.ndarray:
    """A glioblastoma: necrotic core, enhancing rim, non-enhancing tumour and oedema (BraTS-style labels)."""
    brain = (labels == GM) | (labels == WM)
    depth = ndimage.distance_transform_edt(brain, sampling=zooms)
    r_core = (3 * core_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    candidates = np.argwhere(depth > min(r_core * 0.6, 25))
    if len(candidates) == 0:
        candidates = np.argwhere(brain)
    centre = candidates[rng.integers(len(candidates))].astype(float)
    z = np.asarray(zooms, float)
    core = _blob(labels.shape, centre, r_core / z, rng, 0.25) & brain
    necrosis = _blob(labels.shape, centre, 0.55 * r_core / z, rng, 0.3) & core
    rim = core & ~necrosis
    # part of the rim does not enhance
    split = ndimage.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), 3)
    nonenhancing = rim & (split > np.quantile(split[rim], 0.65) if rim.any() else False)
    enhancing = rim & ~nonenhancing
    oedema = _blob(labels.shape, centre, (r_core + rng.uniform(8, 20)) / z, rng, 0.35) & (labels == WM) & ~core
    out = np.zeros(labels.shape, np.uint8)
    out[oedema], out[necrosis], out[nonenhancing], out[enhancing] = OEDEMA, NECROSIS, NONENHANCING, ENHANCING
    return out
