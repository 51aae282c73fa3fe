"""Affine registration of a subject's brain to the MNI152 brain (antspyx).

The subject's skull-stripped, bias-corrected brain is registered to nilearn's
MNI152 2009 brain (``defacebench.templates.mni152("t1")``) with a 12-parameter
affine (ANTs, Avants et al. 2011, NeuroImage 54:2033-2044), using the fast
settings measured in ``/work/shared/notes/dependencies.md`` and, by default,
both images resampled to 2 mm (an affine needs no finer detail and this is ~4x
cheaper). All matrices returned here are in RAS+ world coordinates (mm) and
map *subject* points to *MNI* points.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache

import nibabel as nib
import numpy as np

from ..antslib import image_from_array, import_ants
from ..antsseed import seeded
from ..templates import mni152

ants = import_ants()

#: Default affine settings (fast; see dependencies.md).
AFFINE_SETTINGS = {
    "resolution_mm": 2.0,
    "aff_metric": "mattes",
    "aff_iterations": (100, 50, 0),
    "aff_shrink_factors": (4, 2, 1),
    "aff_smoothing_sigmas": (2, 1, 0),
    "aff_random_sampling_rate": 0.1,
}

#: ITK's physical space is LPS; nibabel's is RAS.
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_ants(img: nib.Nifti1Image) -> ants.ANTsImage:
    """A float32 ANTs image with ``img``'s grid (any orientation)."""
    return image_from_array(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def resample_to(image: ants.ANTsImage, mm: float | None) -> ants.ANTsImage:
    """``image`` resampled (linear) to isotropic ``mm`` voxels; unchanged when ``mm`` is None or finer."""
    if not mm or min(image.spacing) >= mm - 1e-6:
        return image
    return ants.resample_image(image, (mm, mm, mm), use_voxels=False, interp_type=0)


@lru_cache(maxsize=4)
def mni_brain(resolution_mm: float | None = 2.0) -> ants.ANTsImage:
    """nilearn's MNI152 brain (T1, brain only) as an ANTs image, optionally resampled."""
    return resample_to(to_ants(nib.load(mni152("t1"))), resolution_mm)


def _transform_to_matrix(path: str) -> np.ndarray:
    """An ITK affine transform file as a 4x4 matrix in LPS (fixed -> moving points)."""
    tx = ants.read_transform(path)
    params = np.asarray(tx.parameters, dtype=float)
    center = np.asarray(tx.fixed_parameters, dtype=float)
    linear = params[:9].reshape(3, 3)
    translation = params[9:12]
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = translation + center - linear @ center
    return matrix


def affine_between(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    *,
    resolution_mm: float | None = AFFINE_SETTINGS["resolution_mm"],
    aff_metric: str = AFFINE_SETTINGS["aff_metric"],
    aff_iterations=AFFINE_SETTINGS["aff_iterations"],
    aff_shrink_factors=AFFINE_SETTINGS["aff_shrink_factors"],
    aff_smoothing_sigmas=AFFINE_SETTINGS["aff_smoothing_sigmas"],
    aff_random_sampling_rate: float = AFFINE_SETTINGS["aff_random_sampling_rate"],
    seed: int = 1,
) -> np.ndarray:
    """4x4 RAS matrix mapping ``moving`` points to ``fixed`` points (ANTs 12-parameter affine, seeded).

    ``moving`` is resampled to ``resolution_mm`` (``fixed`` is given at the resolution wanted); the
    images are first aligned by their centres of mass (antsRegistration's default initialisation).
    """
    moving = resample_to(moving, resolution_mm)
    with seeded(seed), tempfile.TemporaryDirectory(prefix="defacebench-reg-") as tmp:
        result = ants.registration(
            fixed,
            moving,
            type_of_transform="Affine",
            aff_metric=aff_metric,
            aff_iterations=tuple(aff_iterations),
            aff_shrink_factors=tuple(aff_shrink_factors),
            aff_smoothing_sigmas=tuple(aff_smoothing_sigmas),
            aff_random_sampling_rate=aff_random_sampling_rate,
            outprefix=os.path.join(tmp, "aff_"),
        )
        fixed_to_moving_lps = _transform_to_matrix(result["fwdtransforms"][0])
    return np.linalg.inv(_LPS @ fixed_to_moving_lps @ _LPS)


def affine_to_mni(
    brain: ants.ANTsImage, *, resolution_mm: float | None = AFFINE_SETTINGS["resolution_mm"], **settings
) -> np.ndarray:
    """4x4 RAS matrix mapping subject-brain points to MNI points (12-parameter affine).

    ``brain`` is the subject's skull-stripped, bias-corrected image (zero outside
    the brain); ``settings`` are :func:`affine_between`'s.
    """
    return affine_between(mni_brain(resolution_mm), brain, resolution_mm=resolution_mm, **settings)


def volume_scaling(subject_to_mni: np.ndarray) -> float:
    """SIENAX's VSCALING: the determinant of the linear part (volume factor subject -> MNI)."""
    return float(np.linalg.det(subject_to_mni[:3, :3]))


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Transform an (N, 3) array of points by a 4x4 matrix."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]
