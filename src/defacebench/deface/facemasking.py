"""FaceMasking, an open re-implementation of Milchenko & Marcus (2013), Neuroinformatics 11:65-75.

"Obscuring surface anatomy in volumetric imaging data" does not remove the
face: it blurs the facial surface so that a 3D rendering no longer shows a
recognisable face, while every voxel away from the surface, the brain above
all, keeps its value. Their "normalized anterior filtering" extracts a thin
boundary layer containing the surface anatomy of a region of interest,
"stretches and flattens" it into a thin box, smooths the box along planes
roughly parallel to the surface and maps it back onto the layer.

This re-implementation (backend ``defacebench-facemasking (re-implementation
of Milchenko & Marcus 2013)``; not the authors' MATLAB/XNAT tool) does the
same in canonical RAS space with the anterior axis as the viewing direction:

1. the region of interest is the registered template face region
   (:func:`defacebench.deface.common.face_weights`);
2. along every anterior-posterior ray of the region, the skin surface is the
   first voxel above the head threshold; a heavily smoothed version of this
   depth map is the reference surface (the flattening: the box's depth axis
   counts voxels from the reference surface, so nose, lips and eyes become
   relief within the box);
3. the box (``outside_mm`` in front of the reference surface to ``inside_mm``
   behind it) is smoothed with a Gaussian of ``blur_mm`` along its two
   in-plane axes only (normalised convolution, so the region's border does
   not darken);
4. the smoothed box replaces the layer, blended with a feathered weight at the
   region's border (no hard edges, which the paper avoids because they
   confuse processing tools), never inside a dilated brain mask.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import io
from ..integrity import head_mask
from .common import within_mm

BACKEND = "defacebench-facemasking (re-implementation of Milchenko & Marcus 2013)"

DEFAULTS = {
    "outside_mm": 30.0,
    "inside_mm": 15.0,
    "reference_mm": 20.0,
    "blur_mm": 8.0,
    "protect_mm": 5.0,
    "feather_mm": 3.0,
}


def _smooth_where(values: np.ndarray, weights: np.ndarray, sigma) -> np.ndarray:
    """Normalised convolution: Gaussian smoothing of ``values`` counting only voxels with weight."""
    num = ndimage.gaussian_filter(values * weights, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weights, sigma, mode="nearest")
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), values)


def obscure(
    img: nib.Nifti1Image, face_weights: np.ndarray, brain_mask: np.ndarray, **params
) -> tuple[np.ndarray, dict]:
    """Obscured voxel array of ``img`` (float, on ``img``'s grid) and the parameters used."""
    p = {**DEFAULTS, **{k: float(v) for k, v in params.items() if k in DEFAULTS}}
    canonical = io.to_canonical(img)
    zx, zy, zz = (float(z) for z in canonical.header.get_zooms()[:3])
    data = np.asarray(canonical.dataobj, np.float32)
    face = (
        io.to_canonical(nib.Nifti1Image(np.asarray(face_weights, np.float32), img.affine)).get_fdata(dtype=np.float32)
        > 0.5
    )
    brain = (
        io.to_canonical(nib.Nifti1Image(np.asarray(brain_mask, np.uint8), img.affine)).get_fdata(dtype=np.float32) > 0
    )
    nx, ny, nz = data.shape
    head = head_mask(ndimage.gaussian_filter(data, [1.0 / zx, 1.0 / zy, 1.0 / zz]))
    columns = (face & head).any(axis=1)  # (x, z) rays that meet the face
    if not columns.any():
        return data_back(data, img), {**p, "layer_voxels": 0}
    # skin surface: y index of the first head voxel seen from the front (anterior = high y in RAS)
    surface = (ny - 1 - np.argmax(head[:, ::-1, :], axis=1)).astype(np.float32)
    weight = columns.astype(np.float32)
    reference = _smooth_where(surface, weight, [p["reference_mm"] / zx, p["reference_mm"] / zz])
    # the box: depth k voxels behind the reference surface (negative: in front of it)
    k = np.arange(-int(round(p["outside_mm"] / zy)), int(round(p["inside_mm"] / zy)) + 1)
    ys = np.rint(reference)[:, None, :] - k[None, :, None]  # (x, k, z)
    valid = (ys >= 0) & (ys < ny) & columns[:, None, :]
    ys_c = np.clip(ys, 0, ny - 1).astype(np.intp)
    xs = np.arange(nx)[:, None, None]
    zs = np.arange(nz)[None, None, :]
    box = data[xs, ys_c, zs]
    smoothed = _smooth_where(box, valid.astype(np.float32), [p["blur_mm"] / zx, 0.0, p["blur_mm"] / zz])
    # feathered weight of the region, zero inside the protected brain
    blend = ndimage.gaussian_filter(face.astype(np.float32), [p["feather_mm"] / z for z in (zx, zy, zz)])
    blend[within_mm(brain, p["protect_mm"], (zx, zy, zz))] = 0.0
    out = data.copy()
    w = np.where(valid, blend[xs, ys_c, zs], 0.0)
    # a ray may visit a voxel once only (one y per k), so the scatter below has no collisions
    sel = w > 0
    vx, vy, vz = np.broadcast_to(xs, ys.shape)[sel], ys_c[sel], np.broadcast_to(zs, ys.shape)[sel]
    out[vx, vy, vz] = w[sel] * smoothed[sel] + (1 - w[sel]) * data[vx, vy, vz]
    out = np.clip(out, min(0.0, float(data.min())), None)
    return data_back(out, img), {**p, "layer_voxels": int(sel.sum())}


def data_back(data_ras: np.ndarray, img: nib.Nifti1Image) -> np.ndarray:
    """Canonical array back onto ``img``'s grid."""
    return io.from_canonical(data_ras, img)
