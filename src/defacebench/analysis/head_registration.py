"""Whole-head affine registration to a head template, and the standard-space brain region it gives.

The classic pipelines that de Sitter et al. (2020) measured register the *whole head* before they
look at the brain: FSL's ``bet -B`` and ``robustfov`` run FLIRT (Jenkinson & Smith 2001, Med Image
Anal 5:143-156; Jenkinson et al. 2002, NeuroImage 17:825-841; 12 degrees of freedom, correlation
ratio) of the head to MNI152's whole-head T1, then ``standard_space_roi -b`` masks the image with
MNI152's dilated brain mask carried back to the subject, so that BET does not grow into the neck.
Whatever defacing removes (face, ears, neck) takes part in that registration, which is how the
classic pipeline can feel it. This module is an open re-implementation of those two steps, named
``whole-head affine`` and ``standard-space brain ROI`` in the records, not FSL's programs.

* **Head template.** No MNI152 whole-head T1 ships in an installed wheel (nilearn's MNI152 2009 T1
  is masked to the brain); PyDeface's mean head (``mean_reg2mean.nii.gz``, whole head with face,
  1 mm) is used. Its place relative to MNI152 is one fixed affine, fitted once with the modern NBV
  arm's own brain registration (deepbet mask of the template, N4, ANTs affine to the MNI152 brain;
  ``model_fitting/fit_head_template_to_mni.py``) and shipped in ``data/head_template_to_mni152.json``.
* **Registration.** ANTs (Avants et al. 2011, NeuroImage 54:2033) 12-parameter affine of the whole,
  unmasked head to the template at 2 mm, Mattes mutual information (ANTs has no correlation ratio,
  FLIRT's cost; both are intensity-mapping-tolerant costs), initialised by the centres of mass.
* **Standard-space ROI.** The MNI152 intracranial region (:func:`defacebench.templates.mni152_intracranial`),
  dilated by ``dilation_mm`` (FSL's ``MNI152_T1_2mm_brain_mask_dil`` is the brain mask dilated by a
  few voxels), carried to the subject through the inverse affines (nearest neighbour); voxels
  outside it are set to the image's minimum before brain extraction.

Subject -> MNI: ``template_to_mni @ subject_to_template``. Its determinant is the whole-head
volume scaling, which the classic NBV configuration uses where SIENAX's skull-constrained
``pairreg`` stands (see :mod:`defacebench.analysis.nbv`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..brain import dilate_mask
from ..io import voxel_volume_ml
from ..records import AnalysisFailure
from ..templates import mni152_intracranial, pydeface_head
from .bet_like import bet_like_brain_mask, head_threshold, robust_range
from .registration import affine_between, resample_to, to_ants

METHOD = "whole-head affine (ANTs, 12 dof, Mattes MI) to PyDeface's mean head, after FLIRT of the whole head"
TEMPLATE_TO_MNI_FILE = "head_template_to_mni152.json"

#: Whole-head registration settings (2 mm: an affine needs no finer detail).
HEAD_AFFINE_SETTINGS = {
    "resolution_mm": 2.0,
    "aff_metric": "mattes",
    "aff_iterations": (100, 50, 20),
    "aff_shrink_factors": (4, 2, 1),
    "aff_smoothing_sigmas": (2, 1, 0),
    "aff_random_sampling_rate": 0.2,
}

#: Dilation of the MNI152 intracranial region for the standard-space ROI (mm).
ROI_DILATION_MM = 8.0

#: Below this volume above BET's head threshold the image holds a brain, not a head (measured: the
#: skull-stripped sub-ms07 and sub-gbm7294 1101 and 1225 ml; heads with a face, defaced heads and
#: sub-ms12 whose face the provider removed 2629-4654 ml).
MIN_HEAD_ML = 2000.0


def head_tissue_ml(image: nib.Nifti1Image) -> float:
    """Volume (ml) of the voxels above BET's head threshold ``t2 + 0.1 (t98 - t2)`` (Smith 2002)."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    return float(np.count_nonzero(data > head_threshold(*robust_range(data))) * voxel_volume_ml(image))


@lru_cache(maxsize=2)
def head_template(resolution_mm: float | None = 2.0):
    """PyDeface's mean head as an ANTs image, optionally resampled (cached)."""
    return resample_to(to_ants(nib.load(str(pydeface_head()))), resolution_mm)


@lru_cache(maxsize=1)
def template_to_mni() -> np.ndarray:
    """The shipped 4x4 RAS affine from PyDeface's head template to MNI152 2009 (read-only)."""
    with (resources.files("defacebench") / "data" / TEMPLATE_TO_MNI_FILE).open("r") as handle:
        matrix = np.asarray(json.load(handle)["template_to_mni_ras"], dtype=float)
    matrix.setflags(write=False)
    return matrix


def whole_head_affine(head: nib.Nifti1Image, **settings) -> np.ndarray:
    """4x4 RAS matrix mapping points of the subject's whole head to the head template (12 dof, unmasked).

    ``settings`` override :data:`HEAD_AFFINE_SETTINGS` (:func:`.registration.affine_between`'s keywords).
    """
    settings = {**HEAD_AFFINE_SETTINGS, **settings}
    return affine_between(head_template(settings["resolution_mm"]), to_ants(head), **settings)


def head_to_mni(
    head: nib.Nifti1Image,
    stage: str = "head_registration",
    needed_by: str = "The classic pipeline's whole-head registration needs a head; the modern pipeline "
    "(deepbet, intracranial outline) measures such images",
    **settings,
) -> np.ndarray:
    """4x4 RAS matrix from the subject's whole head to MNI152 2009, through the head template.

    The classic pipelines' spatial normalisation (FLIRT of the whole head, as SIENAX and ``bet -B``
    run it). Raises :class:`AnalysisFailure` at ``stage`` when the image holds a brain rather than a
    head (:data:`MIN_HEAD_ML`): a brain registered to a whole head gives a meaningless scale and ROI;
    ``needed_by`` ends that failure's message (what needed the head, and what to run instead).
    ``settings`` override :data:`HEAD_AFFINE_SETTINGS`.
    """
    head_ml = head_tissue_ml(head)
    if head_ml < MIN_HEAD_ML:
        raise AnalysisFailure(
            stage,
            f"only {head_ml:.0f} ml above the head threshold (a head has > {MIN_HEAD_ML:.0f}): "
            f"skull-stripped? {needed_by}",
        )
    matrix = template_to_mni() @ whole_head_affine(head, **settings)
    if not np.isfinite(matrix).all():
        raise AnalysisFailure(stage, "whole-head affine is not finite")
    return matrix


def standard_space_brain_roi(
    image: nib.Nifti1Image, subject_to_mni: np.ndarray, dilation_mm: float = ROI_DILATION_MM
) -> np.ndarray:
    """Boolean mask on ``image``'s grid: the dilated MNI152 intracranial region carried to the subject.

    After FSL's ``standard_space_roi -b`` (which masks with ``MNI152_T1_2mm_brain_mask_dil``); the
    region is dilated in MNI space, then sampled at every subject voxel through the inverse affine
    (nearest neighbour).
    """
    mask, mni_affine = mni152_intracranial()
    zooms = np.sqrt((mni_affine[:3, :3] ** 2).sum(axis=0))
    dilated = dilate_mask(mask, dilation_mm, zooms)
    # subject voxel -> MNI voxel
    voxel_map = np.linalg.inv(mni_affine) @ subject_to_mni @ image.affine
    shape = image.shape[:3]
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    mni_ijk = voxel_map[:3, :3].astype(np.float32) @ ijk + voxel_map[:3, 3:4].astype(np.float32)
    sampled = ndimage.map_coordinates(dilated.astype(np.uint8), mni_ijk, order=0, mode="constant", cval=0)
    return sampled.reshape(shape).astype(bool)


def apply_roi(image: nib.Nifti1Image, roi: np.ndarray) -> nib.Nifti1Image:
    """``image`` with every voxel outside ``roi`` set to the image's minimum (float32)."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    floor = float(np.nanmin(data))
    return nib.Nifti1Image(np.where(roi, data, floor).astype(np.float32), image.affine)


def bet_like_in_standard_space_roi(canonical: nib.Nifti1Image, subject_to_mni: np.ndarray) -> tuple[np.ndarray, dict]:
    """The classic brain extraction: the BET-like surface grown inside the standard-space brain ROI.

    After FSL's ``bet -B`` (``standard_space_roi -b`` before ``bet2``): voxels outside the dilated
    MNI152 brain region carried to the subject (:func:`standard_space_brain_roi`) are set to the
    image's minimum, so the neck no longer pulls the centre of gravity, the head radius and the
    median intensity (Smith 2002) away from the brain. ``bet -B``'s FAST-based bias clean-up
    iterations are not re-implemented. ``canonical`` is in RAS voxel order; the mask is on its grid.
    """
    roi = standard_space_brain_roi(canonical, subject_to_mni)
    if not roi.any():
        raise AnalysisFailure("brain_extraction", "the standard-space brain region falls outside the image")
    mask, info = bet_like_brain_mask(apply_roi(canonical, roi))
    mask &= roi
    if mask.sum() * voxel_volume_ml(canonical) < 300:
        raise AnalysisFailure("brain_extraction", "bet-like mask inside the standard-space ROI is implausibly small")
    keep = ("passes", "self_intersection_rerun", "volume_ml", "t2", "t98", "t", "tm", "radius_mm")
    return mask, {
        "method": "bet_like inside the standard-space brain ROI (after bet -B)",
        "roi_dilation_mm": ROI_DILATION_MM,
        **{k: (round(float(v), 3) if isinstance(v, (float, np.floating)) else v) for k, v in info.items() if k in keep},
    }
