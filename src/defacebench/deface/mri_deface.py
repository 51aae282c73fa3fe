"""mri_deface (Bischoff-Grethe et al. 2007, Hum Brain Mapp 28:892-903): FreeSurfer's tool or a re-implementation.

mri_deface computes a linear transform from the image to its atlas, builds a
brain mask as the union of voxels with a nonzero probability of being brain
(from its brain atlas), dilates it, and sets to zero every voxel outside that
mask with a nonzero probability of being a facial feature (from its face
atlas).

Two backends:

- ``FreeSurfer mri_deface``: the real command with its two atlases
  (``talairach_mixed_with_skull.gca`` and ``face.gca``), when ``mri_deface`` is
  on the PATH and both atlas paths are configured (options ``brain_atlas`` and
  ``face_atlas``, or the environment variables ``MRI_DEFACE_BRAIN_ATLAS`` and
  ``MRI_DEFACE_FACE_ATLAS``);
- ``defacebench-mri_deface-like``: an open re-implementation of the same
  approach. The face atlas is PyDeface's face mask carried into the subject by
  affine registration (:func:`defacebench.deface.common.face_weights`; any
  nonzero face weight counts, as mri_deface counts any nonzero probability),
  and the brain atlas's protective role is played by the subject's own brain
  mask (deepbet) dilated by ``protect_mm``. It is never reported as
  ``mri_deface``.
"""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np

from .common import run_command, within_mm

BACKEND_FREESURFER = "FreeSurfer mri_deface"
BACKEND_REIMPLEMENTATION = "defacebench-mri_deface-like (re-implementation of Bischoff-Grethe et al. 2007)"

#: Face weights above this count as "a nonzero probability of being a facial feature" (interpolation noise below).
NONZERO = 0.01


def freesurfer_setup(options: dict) -> tuple[str, str, str] | None:
    """(command, brain atlas, face atlas) when FreeSurfer's mri_deface is installed and configured, else None."""
    command = options.get("mri_deface_command", "mri_deface")
    brain_atlas = options.get("brain_atlas") or os.environ.get("MRI_DEFACE_BRAIN_ATLAS")
    face_atlas = options.get("face_atlas") or os.environ.get("MRI_DEFACE_FACE_ATLAS")
    if (
        shutil.which(command)
        and brain_atlas
        and face_atlas
        and os.path.exists(brain_atlas)
        and os.path.exists(face_atlas)
    ):
        return command, brain_atlas, face_atlas
    return None


def deface_freesurfer(img: nib.Nifti1Image, setup: tuple[str, str, str], name: str = "input.nii.gz") -> np.ndarray:
    """FreeSurfer's ``mri_deface <input> <brain atlas> <face atlas> <output>`` on ``img``."""
    command, brain_atlas, face_atlas = setup
    return run_command(
        f"{command} {{input}} {{brain_atlas}} {{face_atlas}} {{output}}",
        img,
        {"brain_atlas": brain_atlas, "face_atlas": face_atlas},
        name=name,
    )


def removed_voxels(face_weights: np.ndarray, brain_mask: np.ndarray, zooms, protect_mm: float = 7.0) -> np.ndarray:
    """Voxels the re-implementation sets to zero: nonzero face weight, outside the dilated brain mask."""
    face = np.asarray(face_weights) > (NONZERO if np.asarray(face_weights).dtype != bool else 0)
    return face & ~within_mm(np.asarray(brain_mask, bool), protect_mm, zooms)


def deface(
    data: np.ndarray, face_weights: np.ndarray, brain_mask: np.ndarray, zooms, protect_mm: float = 7.0
) -> np.ndarray:
    """The re-implementation's defaced voxel array."""
    return np.where(removed_voxels(face_weights, brain_mask, zooms, protect_mm), 0, data)
