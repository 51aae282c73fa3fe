"""Array geometry shared by the analyses and the simulator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bounding_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding every non-zero voxel of ``mask``, widened by ``margin`` voxels.

    ``margin`` is one number or one per axis; the box is clipped to the array.
    ``mask`` must have at least one non-zero voxel.
    """
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        raise ValueError("bounding_box of an empty mask")
    margins = [int(margin)] * mask.ndim if np.isscalar(margin) else [int(m) for m in margin]
    return tuple(
        slice(max(0, int(i.min()) - m), min(n, int(i.max()) + m + 1)) for i, n, m in zip(idx, mask.shape, margins)
    )


def box_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The voxel-to-world ``affine`` of a grid cropped to ``box`` (slices with unit step).

    Voxel (0, 0, 0) of the crop is voxel ``box[i].start`` of the grid: only the
    translation changes.
    """
    out = np.array(affine, dtype=float)
    starts = np.array([s.start or 0 for s in box[:3]], dtype=float)
    out[:3, 3] = affine[:3, :3] @ starts + affine[:3, 3]
    return out


def uncrop(cropped: np.ndarray, box: tuple[slice, ...], shape, fill=0) -> np.ndarray:
    """``cropped`` (the ``box`` of an array of ``shape``) put back on the whole grid, ``fill`` elsewhere."""
    full = np.full(tuple(shape) + cropped.shape[len(box) :], fill, dtype=cropped.dtype)
    full[box] = cropped
    return full
