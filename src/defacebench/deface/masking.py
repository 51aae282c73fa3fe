"""Template-based face removal and obscuring: PyDeface, the mri_deface approach and FaceMasking.

All three place a face region in the subject by registering a head template
with a face mask (:mod:`defacebench.deface.template`) and differ in what they do
inside it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..brain import dilate_mask


def remove_face(data: np.ndarray, face_region: np.ndarray) -> np.ndarray:
    """PyDeface: voxels of the registered face mask are set to zero (the image is multiplied by the mask)."""
    return np.where(face_region, 0, data)


def remove_face_protecting_brain(data: np.ndarray, face_region: np.ndarray, brain_mask: np.ndarray, zooms,
                                 protect_mm: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """The mri_deface approach (Bischoff-Grethe et al. 2007, Hum Brain Mapp 28:892-903).

    mri_deface registers a face atlas and a brain atlas and removes face-atlas
    voxels unless the brain atlas says they may be brain. This re-implementation
    removes the registered face region except a dilated brain mask of the
    subject (``protect_mm``), which plays the brain atlas's protective role.
    Returns the defaced data and the removed-voxel mask.
    """
    protected = dilate_mask(brain_mask, protect_mm, zooms)
    removed = face_region & ~protected
    return np.where(removed, 0, data), removed


def obscure_face_surface(data: np.ndarray, face_region: np.ndarray, brain_mask: np.ndarray, zooms,
                         depth_mm: float = 12.0, blur_mm: float = 8.0, protect_mm: float = 5.0,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """FaceMasking, re-implemented after Milchenko & Marcus (2013), Neuroinformatics 11:65-75.

    FaceMasking does not remove the face: it finds the facial surface and
    replaces a layer around it with a blurred, scrambled version, so that the
    surface can no longer be rendered into a recognisable face while the rest of
    the image, the brain above all, is unchanged. Here the layer is every voxel
    of the registered face region within ``depth_mm`` of the air-skin boundary
    (on both sides of it), minus a dilated brain mask; inside it the intensities
    are replaced by a heavily smoothed image (``blur_mm``) whose voxels are
    shuffled within small blocks and modulated by smooth random noise.
    Returns the obscured data and the changed-layer mask.
    """
    from ..integrity import head_mask

    rng = np.random.default_rng(seed)
    data_f = np.asarray(data, np.float32)
    head = ndimage.binary_fill_holes(head_mask(data_f))
    sampling = np.asarray(zooms, float)
    inside = ndimage.distance_transform_edt(head, sampling=sampling)
    outside = ndimage.distance_transform_edt(~head, sampling=sampling)
    layer = face_region & (np.where(head, inside, outside) <= depth_mm)
    layer &= ~dilate_mask(brain_mask, protect_mm, zooms)
    blurred = ndimage.gaussian_filter(data_f, sigma=blur_mm / sampling / 2.355)
    # scramble: permute voxels within 4x4x4 blocks of the blurred image
    scrambled = blurred.copy()
    idx = np.argwhere(layer)
    if len(idx):
        blocks = idx // 4
        order = np.lexsort(blocks.T[::-1])
        idx, blocks = idx[order], blocks[order]
        _, starts = np.unique(blocks, axis=0, return_index=True)
        bounds = list(starts) + [len(idx)]
        values = blurred[tuple(idx.T)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            values[a:b] = rng.permutation(values[a:b])
        scrambled[tuple(idx.T)] = values
    noise = ndimage.gaussian_filter(rng.normal(0, 1, data_f.shape).astype(np.float32), sigma=3.0 / sampling)
    noise /= max(float(noise.std()), 1e-6)
    level = float(np.percentile(data_f[head], 75)) if head.any() else 1.0
    obscured = np.clip(scrambled + 0.35 * level * noise, 0, None)
    out = np.where(layer, obscured, data_f)
    return out, layer
