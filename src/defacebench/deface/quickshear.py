"""QuickShear (Schimke & Hale 2011, "Quickshear defacing for neuroimages", HealthSec'11).

Uses the quickshear package's own edge detection and convex hull
(``quickshear.edge_mask``, ``quickshear.convex_hull``). Two defects of
quickshear 1.2.0's ``quickshear()`` are avoided by doing its last step here:
its shear line is evaluated over the superior-inferior axis length instead of
the anterior-posterior one (wrong on non-cubic volumes), and it pairs line
heights with the wrong columns when the line starts below the volume. It also
rejects masks whose affine differs from the image's by rounding, so the mask is
passed as an array on the image's own grid. The buffer is given in millimetres
(quickshear: 10 voxels) so that the margin does not depend on voxel size.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import quickshear as qs


def shear_mask(brain_mask: np.ndarray, affine: np.ndarray, buffer_mm: float = 10.0) -> np.ndarray:
    """Voxels QuickShear keeps (True) for a brain mask on a grid with ``affine``.

    Works in RPS orientation as quickshear does (axis 1 anterior->posterior,
    axis 2 inferior->superior), then returns to the input grid.
    """
    src = nib.io_orientation(affine)
    rps = nib.orientations.axcodes2ornt("RPS")
    to_rps = nib.orientations.ornt_transform(src, rps)
    from_rps = nib.orientations.ornt_transform(rps, src)
    mask_rps = nib.orientations.apply_orientation(np.asarray(brain_mask, np.uint8), to_rps)
    # voxel size along each RPS axis: input axis i becomes output axis to_rps[i, 0]
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing_rps = np.empty(3)
    spacing_rps[to_rps[:, 0].astype(int)] = spacing
    edge = qs.edge_mask(mask_rps)
    hull = qs.convex_hull(edge)
    if hull.shape[1] < 2:
        raise ValueError("brain mask too small for a convex hull")
    dp, ds = np.diff(hull[:, :2], axis=1)[:, 0]
    slope = ds / dp if dp != 0 else 0.0
    buffer_vox = buffer_mm / spacing_rps[2]
    intercept = hull[1][0] - hull[0][0] * slope - buffer_vox
    keep = np.ones(mask_rps.shape, bool)
    heights = np.arange(mask_rps.shape[1]) * slope + intercept
    for p in np.nonzero(heights > 0)[0]:
        keep[:, p, : int(heights[p])] = False
    return nib.orientations.apply_orientation(keep, from_rps).astype(bool)


def deface(img: nib.Nifti1Image, brain_mask: np.ndarray, buffer_mm: float = 10.0) -> tuple[np.ndarray, dict]:
    """Defaced data of ``img`` (same grid) and parameters."""
    keep = shear_mask(brain_mask, img.affine, buffer_mm)
    data = np.asanyarray(img.dataobj)
    return np.where(keep, data, 0), {"buffer_mm": buffer_mm, "quickshear": qs.__version__}
