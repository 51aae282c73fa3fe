"""PyDeface (Gulban et al., poldracklab/pydeface): template registration and face-mask multiplication.

PyDeface registers its head template (``mean_reg2mean.nii.gz``) to the image
with FSL ``flirt`` (affine, mutual information), carries its face mask
(``facemask.nii.gz``: 1 keep, 0 face) into the image with the same transform
(trilinear interpolation) and multiplies the image by it.

Two backends:

- ``pydeface`` (FSL): the real ``pydeface`` command, when ``FSLDIR`` is set and
  ``pydeface`` and ``flirt`` are on the PATH;
- ``defacebench-pydeface-ants``: the same template, face mask and
  multiplication, with the registration done by antspyx instead of flirt
  (:func:`defacebench.deface.common.face_weights`), so that it runs from pip
  alone.
"""

from __future__ import annotations

import os
import shutil

import nibabel as nib
import numpy as np

from .common import run_command

BACKEND_ANTS = "defacebench-pydeface-ants (PyDeface template and face mask, antspyx affine registration)"
BACKEND_FSL = "pydeface (FSL flirt)"


def fsl_available() -> bool:
    """Whether the real pydeface can run: FSL configured and both commands on the PATH."""
    return bool(os.environ.get("FSLDIR")) and shutil.which("pydeface") is not None and shutil.which("flirt") is not None


def deface_fsl(img: nib.Nifti1Image, name: str = "input.nii.gz") -> np.ndarray:
    """The ``pydeface`` command's output for ``img`` (raises AnalysisFailure when it fails)."""
    return run_command("pydeface {input} --outfile {output} --force", img, name=name)


def deface(data: np.ndarray, face_weights: np.ndarray) -> np.ndarray:
    """PyDeface's last step: the image times the interpolated keep mask (``1 - face_weights``)."""
    weights = np.asarray(face_weights).astype(np.float32)  # a binary face region works too
    keep = 1.0 - np.clip(weights, 0.0, 1.0)
    return np.where(keep >= 1.0, data, np.asarray(data, np.float64) * keep)
