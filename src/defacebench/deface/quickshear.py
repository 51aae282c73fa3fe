"""QuickShear (Schimke & Hale 2011, "Quickshear defacing for neuroimages", USENIX HealthSec'11).

QuickShear takes the sagittal profile of a brain mask, finds the lower convex
hull of its outline, shifts the hull's first segment down by a buffer and
removes everything below that line: a plane through the face, in front of and
below the brain.

This runs the quickshear package's own ``quickshear.quickshear`` (which uses
its ``edge_mask`` and ``convex_hull``) and works around three pitfalls of
quickshear 1.2.0 instead of rewriting it:

1. it needs a mask image whose affine equals the image's (its command line
   rejects a difference of 1e-8): the mask is handed over as an image built on
   the anatomical image's own affine;
2. it evaluates the cut line over the length of the superior-inferior axis
   while indexing the anterior-posterior axis, so on non-cubic volumes the line
   is cut short or runs off the array: the volume is zero-padded to equal
   anterior-posterior and superior-inferior lengths (and by a margin, because
   its edge detection wraps around with ``np.roll``), then cropped back;
3. it works in its own RPS orientation from the mask's affine: we hand it the
   canonical (RAS) image from :func:`defacebench.io.to_canonical` and bring the
   result back to the input's grid with :func:`defacebench.io.from_canonical`
   (exact flips, no resampling).

It also pairs line heights with the wrong columns when the line rises towards
the back (a positive slope in its RPS frame, which a brain mask in a head does
not give): that case is reported as a failure rather than silently mis-cut.
The buffer is given in millimetres (quickshear: 10 voxels) so that the margin
does not depend on voxel size; it is converted to voxels of the
superior-inferior axis.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import quickshear as qs

from .. import io
from ..records import AnalysisFailure

BACKEND = "quickshear {version} (Schimke & Hale 2011), orientation-safe wrapper"

#: Zero margin around the padded volume (voxels), so quickshear's np.roll edge detection cannot wrap.
MARGIN = 2


def _slope(mask_rps: np.ndarray) -> float:
    """Slope of quickshear's cut line, from its own edge and hull functions (for the sanity check)."""
    with warnings.catch_warnings():  # quickshear's np.cross on 2D vectors (deprecated in NumPy 2, still exact)
        warnings.simplefilter("ignore", DeprecationWarning)
        low = qs.convex_hull(qs.edge_mask(mask_rps))
    if low.ndim != 2 or low.shape[1] < 2:
        raise AnalysisFailure("deface", "brain mask too small for QuickShear's convex hull")
    dp, ds = np.diff(low[:, :2], axis=1)[:, 0]
    return float(ds / dp) if dp else float("inf")


def keep_mask(img: nib.Nifti1Image, brain_mask: np.ndarray, buffer_mm: float = 10.0) -> np.ndarray:
    """Voxels QuickShear keeps (True), on ``img``'s grid."""
    brain_mask = np.asarray(brain_mask, bool)
    if brain_mask.shape != img.shape[:3]:
        raise ValueError(f"brain mask shape {brain_mask.shape} differs from the image's {img.shape[:3]}")
    if not brain_mask.any():
        raise AnalysisFailure("brain_extraction", "empty brain mask: QuickShear has nothing to shear along")
    canonical = io.to_canonical(nib.Nifti1Image(brain_mask.astype(np.uint8), img.affine))
    mask_ras = np.asarray(canonical.dataobj, np.uint8)
    # pitfall 2: equal A-P and S-I lengths plus a margin on every side
    side = max(mask_ras.shape[1], mask_ras.shape[2]) + 2 * MARGIN
    pad = [(MARGIN, MARGIN), (MARGIN, side - MARGIN - mask_ras.shape[1]), (MARGIN, side - MARGIN - mask_ras.shape[2])]
    padded = np.pad(mask_ras, pad)
    # pitfall 1: one affine for both images (canonical, so quickshear's RPS step is a single flip)
    affine = canonical.affine
    ones = nib.Nifti1Image(np.ones(padded.shape, np.uint8), affine)
    mask_img = nib.Nifti1Image(padded, affine)
    slope = _slope(padded[:, ::-1, :])  # RAS -> quickshear's RPS: flip the anterior axis
    if slope > 0:
        raise AnalysisFailure(
            "deface",
            "QuickShear's cut line rises towards the back of the head; the brain mask is implausible for a head image",
        )
    zoom_si = float(np.sqrt((affine[:3, 2] ** 2).sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        kept = np.asanyarray(qs.quickshear(ones, mask_img, buff=buffer_mm / zoom_si).dataobj) > 0
    kept = kept[tuple(slice(a, n - b) for (a, b), n in zip(pad, padded.shape))]
    return io.from_canonical(kept, img).astype(bool)


def deface(img: nib.Nifti1Image, brain_mask: np.ndarray, buffer_mm: float = 10.0) -> tuple[np.ndarray, dict]:
    """QuickShear-defaced voxel array of ``img`` (same grid and values outside the cut) and parameters."""
    keep = keep_mask(img, brain_mask, buffer_mm)
    data = np.asanyarray(img.dataobj)
    return np.where(keep, data, 0), {"buffer_mm": buffer_mm, "quickshear": qs.__version__}
