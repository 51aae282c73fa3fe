"""Intensity non-uniformity (bias field) correction.

N4 (Tustison et al. 2010, "N4ITK: improved N3 bias correction", IEEE TMI
29:1310-1320) through antspyx, with settings chosen for speed on two cores
(see ``/work/shared/notes/dependencies.md``: shrink factor 4 and three short
fitting levels take ~5 s on a 1 mm head instead of ~110 s at the defaults).
"""

from __future__ import annotations

import numpy as np

from ..antslib import import_ants
from ..records import AnalysisFailure

ants = import_ants()

#: Default N4 settings (fast; the field is smooth, so a shrunken grid is enough). The tolerance is
#: small enough that every iteration runs: at 1e-3 N4 took 3.6-4.0 s instead of 6.5-7.7 s and the
#: simulated bench did not move (NBV error 1.78 % vs 1.77 %), but on real heads it stopped almost at
#: once (0.5 s on sub-IXI012/IXI013) and real NBVs moved by up to 2 % (sub-otsu -2.0 %, sub-ms07
#: +2.1 %), so a field left uncorrected was not ruled out (2026-11-30).
N4_SETTINGS = {"shrink_factor": 4, "iterations": (20, 20, 10), "tolerance": 1e-6}


def positive_for_n4(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The voxels N4 may fit (inside ``mask`` with a positive intensity) and an input it can take.

    N4 models the image as the true intensity times a smooth field and fits that field on the
    logarithm of the image, so only positive intensities carry information. Skull-stripped,
    resampled scans hold non-positive values inside the brain (interpolation undershoot: down to
    -20 % of the brain's median on sub-ms07 and sub-gbm7294); they are left out of the fit, and
    every non-positive voxel is set to 1 in N4's input; :func:`n4_field`'s callers divide the
    fitted field out of them all the same. Adding a constant to every voxel instead, as this
    package did before, turns the multiplicative field into a diluted one.
    Raises :class:`AnalysisFailure` when no voxel of ``mask`` is positive.
    """
    data = np.asarray(data)
    positive = data > 0
    fit = positive if mask is None else positive & np.asarray(mask, bool)
    if not fit.any():
        raise AnalysisFailure("bias_correction", "no positive intensity inside the brain mask")
    return fit, np.where(positive, data, 1.0).astype(np.float32)


def n4_field(
    image: ants.ANTsImage,
    mask: np.ndarray | None = None,
    *,
    shrink_factor: int = N4_SETTINGS["shrink_factor"],
    iterations=N4_SETTINGS["iterations"],
    tolerance: float = N4_SETTINGS["tolerance"],
) -> np.ndarray:
    """The multiplicative field N4 fits to ``image``'s positive voxels inside ``mask``, on the whole grid.

    The field is a smooth B-spline (antspyx's ``return_bias_field``), defined everywhere;
    voxels where it is not a positive number get 1.
    """
    fit, positive = positive_for_n4(image.numpy(), mask)
    field = ants.n4_bias_field_correction(
        image.new_image_like(positive),
        mask=image.new_image_like(fit.astype(np.float32)),
        shrink_factor=int(shrink_factor),
        convergence={"iters": list(iterations), "tol": float(tolerance)},
        return_bias_field=True,
    ).numpy()
    return np.where(np.isfinite(field) & (field > 0), field, 1.0)


def n4_correct(image: ants.ANTsImage, mask: ants.ANTsImage | None = None, **settings) -> ants.ANTsImage:
    """N4-corrected copy of ``image``: the field (:func:`n4_field`) is divided out inside ``mask``, the rest is kept.

    ``settings``: :func:`n4_field`'s keywords (defaults :data:`N4_SETTINGS`). Voxels outside
    the mask are kept as they are, as in antspyx's own corrected image.
    """
    return n4_correct_with_field(image, mask, **settings)[0]


def n4_correct_with_field(image: ants.ANTsImage, mask: ants.ANTsImage | None = None, **settings):
    """:func:`n4_correct`'s image and the field it divided out, on the whole grid (inside and outside ``mask``)."""
    inside = None if mask is None else mask.numpy() > 0
    field = n4_field(image, inside, **settings)
    divisor = field if inside is None else np.where(inside, field, 1.0)
    return image.new_image_like((image.numpy() / divisor).astype(np.float32)), field
