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
from ..io import obliquity_degrees
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

#: The coarse rotation search that starts the affine on an oblique grid, after FLIRT's initial search
#: over rotations (Jenkinson & Smith 2001, Med Image Anal 5:143): ANTs' ``antsAffineInitializer``
#: tries rotations in ``step_deg`` steps over +-``arc_fraction`` x 180 degrees about each axis (27
#: starts for the values here), each refined by ``local_search_iterations`` steps at ``resolution_mm``.
#: Centre-of-mass alignment alone (antsRegistration's default) leaves the rotation to the optimiser,
#: which a 30-degree turn defeats: on sub-IXI012's brain the MNI affine's determinant was 1.245
#: straight and 1.171 / 1.359 with the grid turned by +-30 degrees about z; with the search 1.246 / 1.247.
ROTATION_SEARCH = {"step_deg": 30.0, "arc_fraction": 0.2, "resolution_mm": 4.0, "local_search_iterations": 10}

#: Obliquity (degrees) from which ``rotation_search="oblique"`` searches. Smaller turns are within the
#: optimiser's reach (simulated heads pitched by up to 15 degrees on straight grids register within the
#: NBV arm's validated accuracy), so grids turned less keep the registration every figure was measured
#: with (the real sample's sub-otsu is 3.1 degrees oblique, sub-ms12 5.1; on sub-otsu the search
#: would move NBV by +0.2 %).
OBLIQUE_FROM_DEGREES = 10.0

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
    rotation_search: str = "oblique",
    seed: int = 1,
) -> np.ndarray:
    """4x4 RAS matrix mapping ``moving`` points to ``fixed`` points (ANTs 12-parameter affine, seeded).

    ``moving`` is resampled to ``resolution_mm`` (``fixed`` is given at the resolution wanted). The
    images are first aligned by their centres of mass (antsRegistration's default initialisation),
    or, with ``rotation_search`` "always", or "oblique" and a ``moving`` grid rotated from the
    world axes by :data:`OBLIQUE_FROM_DEGREES` or more, by the coarse rotation search of
    :data:`ROTATION_SEARCH` ("never": centres of mass only). "oblique" leaves straight grids, on
    which every validated figure was measured, exactly as they were.
    """
    if rotation_search not in ("oblique", "always", "never"):
        raise ValueError(f"rotation_search must be 'oblique', 'always' or 'never', not {rotation_search!r}")
    search = rotation_search == "always" or (
        rotation_search == "oblique" and grid_obliquity_degrees(moving) >= OBLIQUE_FROM_DEGREES
    )
    moving = resample_to(moving, resolution_mm)
    with seeded(seed), tempfile.TemporaryDirectory(prefix="defacebench-reg-") as tmp:
        initial = _rotation_search(fixed, moving, os.path.join(tmp, "initial.mat")) if search else None
        result = ants.registration(
            fixed,
            moving,
            type_of_transform="Affine",
            aff_metric=aff_metric,
            aff_iterations=tuple(aff_iterations),
            aff_shrink_factors=tuple(aff_shrink_factors),
            aff_smoothing_sigmas=tuple(aff_smoothing_sigmas),
            aff_random_sampling_rate=aff_random_sampling_rate,
            initial_transform=initial,
            outprefix=os.path.join(tmp, "aff_"),
        )
        fixed_to_moving_lps = _transform_to_matrix(result["fwdtransforms"][0])
    return np.linalg.inv(_LPS @ fixed_to_moving_lps @ _LPS)


def grid_obliquity_degrees(image: ants.ANTsImage) -> float:
    """Largest angle (degrees) between ``image``'s voxel axes and the nearest world axes (:func:`defacebench.io.obliquity_degrees`)."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.direction, float) * np.asarray(image.spacing, float)
    return obliquity_degrees(affine)


def _rotation_search(fixed: ants.ANTsImage, moving: ants.ANTsImage, path: str) -> str:
    """Path of the initial transform :data:`ROTATION_SEARCH` finds (written to ``path``)."""
    settings = ROTATION_SEARCH
    ants.affine_initializer(
        resample_to(fixed, settings["resolution_mm"]),
        resample_to(moving, settings["resolution_mm"]),
        search_factor=settings["step_deg"],
        radian_fraction=settings["arc_fraction"],
        use_principal_axis=False,
        local_search_iterations=settings["local_search_iterations"],
        txfn=path,
    )
    if not os.path.exists(path):
        raise RuntimeError("antsAffineInitializer wrote no transform")
    return path


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
