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
    return tuple(slice(max(0, int(i.min()) - m), min(n, int(i.max()) + m + 1))
                 for i, n, m in zip(idx, mask.shape, margins))
