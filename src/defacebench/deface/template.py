"""The face region of a subject: PyDeface's template face mask brought into the subject by registration.

The template (``mean_reg2mean.nii.gz``) and its face mask ship in the pydeface
wheel (Gulban et al., PyDeface). We register the template head to the subject
head with an antspyx affine (Avants et al. 2011, ANTs) at 2 mm, which is
enough to place a face region and takes a few seconds.
"""

from __future__ import annotations

import os
import tempfile

import nibabel as nib
import numpy as np

from ..records import AnalysisFailure, failure_from_exception
from ..templates import pydeface_facemask, pydeface_head

#: antspyx affine settings: few iterations at coarse levels (see ../shared notes: 13.8 s at 1 mm).
REGISTRATION = dict(
    type_of_transform="Affine",
    aff_metric="mattes",
    aff_iterations=(200, 100, 50),
    aff_shrink_factors=(4, 2, 1),
    aff_smoothing_sigmas=(2, 1, 0),
    aff_random_sampling_rate=0.25,
    random_seed=1,
)


def _ants_from_nifti(img: nib.Nifti1Image):
    import ants

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "img.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), path)
        return ants.image_read(path)


def face_region(subject: nib.Nifti1Image, resolution_mm: float = 2.0) -> tuple[np.ndarray, dict]:
    """Template face region (bool, on ``subject``'s grid) and registration details.

    Raises :class:`AnalysisFailure` (stage ``registration``) when the registration
    errors or places the template head implausibly (scale outside 0.7-1.4).
    """
    import ants

    fixed_full = _ants_from_nifti(subject)
    moving_full = ants.image_read(str(pydeface_head()))
    mask = ants.image_read(str(pydeface_facemask()))
    spacing = (resolution_mm,) * 3
    fixed = ants.resample_image(fixed_full, spacing, use_voxels=False, interp_type=0)
    moving = ants.resample_image(moving_full, spacing, use_voxels=False, interp_type=0)
    try:
        reg = ants.registration(fixed=fixed, moving=moving, **REGISTRATION)
        warped = ants.apply_transforms(fixed=fixed_full, moving=mask, transformlist=reg["fwdtransforms"],
                                       interpolator="linear", defaultvalue=1.0)
        matrix = ants.read_transform(reg["fwdtransforms"][0]).parameters[:9].reshape(3, 3)
    except (RuntimeError, ValueError) as exc:
        raise failure_from_exception("registration", exc) from exc
    finally:
        for path in (reg.get("fwdtransforms", []) + reg.get("invtransforms", [])) if "reg" in locals() else []:
            if os.path.exists(path) and path.startswith(tempfile.gettempdir()):
                os.unlink(path)
    scale = float(abs(np.linalg.det(matrix)) ** (1 / 3))
    if not 0.7 < scale < 1.4:
        raise AnalysisFailure("registration", f"template-to-subject registration diverged (linear scale {scale:.2f})")
    region = warped.numpy() < 0.5
    # ants arrays follow ITK's LPS index order of the file as read; the file was written on subject's grid
    region = region.reshape(subject.shape[:3])
    if not region.any():
        raise AnalysisFailure("registration", "the template face region falls outside the image")
    return region, {"template": "pydeface mean_reg2mean", "registration": "antspyx affine", "resolution_mm": resolution_mm,
                    "linear_scale": scale}
