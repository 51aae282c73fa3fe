"""Skull-bounded volume scaling of the SIENAX-like arm.

SIENAX (Smith et al. 2002, NeuroImage 17:479-489) registers the subject's
brain to the MNI152 brain and lets the *skull* fix the scaling, so that a
small (atrophied) brain in a normal skull is not blown up to template size.
FSL does this with BET's outer-skull image and ``pairreg`` against the MNI152
skull image. No MNI152 skull image ships in any installed wheel (nilearn has
the brain only, and PyDeface's mean head is too blurred to show a dark skull
band: measured, its intensity rises monotonically from brain to scalp), so
this module uses the other skull-defined surface that is available on both
sides, the **inner skull surface**, i.e. the outline of the intracranial
(brain + CSF) mask:

* subject: the brain mask from deepbet, which includes the extracerebral CSF
  up to the inner table of the skull, where dark cortical bone begins (on
  simulated heads with a skull: -0.2 to +2.9 % of the true intracranial volume,
  Dice 0.97-0.98; on real T1w the dark bone band starts within 0.3 mm of its
  outline; ``bench/diag_vscaling.py``);
* template: the outline of nilearn's MNI152 brain (T1 > 0, 1887 ml, also brain +
  CSF).

Starting from the brain-intensity affine, three scale factors (along the MNI
axes, about the surface centroid) and a translation are re-fitted so that the
subject's inner-skull surface falls on the template's: every subject surface
point above MNI z = ``vault_z_mm`` is moved onto the zero level of the
template outline's signed distance map (robust least squares, soft-L1 loss with
scale ``loss_scale_mm``; scipy's trust-region ``least_squares``). The lower
cut (default MNI z > -40 mm, below the temporal poles) leaves out most of the
brainstem and cerebellum, where the mask's outline is an arbitrary cut and not
the skull; points down to it anchor the vertical scale, which the vault alone
(z > 0) leaves poorly determined (measured: up to 13 % off). Rotation and
shear stay as the brain registration found them (as pairreg keeps the
brain-derived alignment and lets the skull constrain the scaling). Growing CSF
spaces inside the skull (atrophy) thus do not change the scaling.

Why a distance map and not point-to-point matching: a symmetric chamfer
distance over k-d-tree nearest neighbours, minimised with Powell, was the first
version. Its cost is piecewise constant in the parameters, and measured on six
simulated heads, starting it from the same affine perturbed by 0.3 % gave
VSCALINGs 2-5 % apart. The distance-map fit moves by less than 0.1 % under the
same perturbation, and on the true intracranial outline it is within 0.6 % of
the true VSCALING (0.44 % on the current simulator, whose heads have a skull),
and on deepbet's outline within 1.06 % (mean absolute error over the six heads;
``bench/diag_vscaling.py``).

Deviation from SIENAX: inner instead of outer skull surface.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import nibabel as nib
import numpy as np
from scipy import ndimage, optimize
from skimage import measure

from ..arrays import bounding_box
from ..templates import mni152_intracranial
from .registration import apply_affine

#: Default skull-estimate and scaling-fit settings.
SKULL_SETTINGS = {
    "vault_z_mm": -40.0,
    "loss_scale_mm": 2.0,
    "min_points": 300,
    "surface_step": 2,
}


def brain_surface(mask: np.ndarray, affine: np.ndarray, step: int = 2) -> np.ndarray:
    """Vertices (N, 3, world mm) of a smoothed brain-mask surface."""
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), 1.5)
    verts, _, _, _ = measure.marching_cubes(smooth, 0.5, step_size=step)
    return apply_affine(affine, verts)


def has_extracranial_tissue(intensity: np.ndarray, brain_mask: np.ndarray, zooms) -> bool:
    """Whether the image shows head tissue outside the brain (False for a skull-stripped image).

    Counts voxels brighter than 20 % of the brain's median in a 5-15 mm shell
    outside the brain mask; a full head has a scalp there.
    """
    if not brain_mask.any():
        return False
    # a distance map is much cheaper than dilating by a 31-voxel ellipsoid at 1 mm; it is computed
    # only within 15 mm of the brain's bounding box, which holds the whole shell and every brain voxel
    # (so its distances are exact), at a third of the cost of the full field of view
    box = bounding_box(brain_mask, margin=[int(np.ceil(15.0 / z)) + 1 for z in zooms])
    distance = ndimage.distance_transform_edt(~brain_mask[box], sampling=zooms)
    shell = (distance > 5.0) & (distance <= 15.0)
    if shell.sum() == 0:
        return False
    reference = float(np.median(intensity[brain_mask]))
    return float(np.mean(intensity[box][shell] > 0.2 * reference)) > 0.05


#: The shipped template distance map (package data), made by :func:`compute_template_inner_skull_distance`.
TEMPLATE_DISTANCE_FILE = "mni152_intracranial_distance.npz"


def compute_template_inner_skull_distance(
    step: int = 2, margin_mm: int = 12, clip_mm: float = 12.0
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (mm, positive outside) to nilearn's MNI152 intracranial outline, and its voxel-to-MNI affine.

    Computed at the template's 1 mm (exact Euclidean distances on both sides
    of the mask boundary), smoothed with a 1 mm Gaussian so that interpolated
    values, and the fit's cost, change smoothly with the parameters, cropped to
    the mask's box plus ``margin_mm``, then kept at every ``step``-th voxel
    (trilinear interpolation of a distance map on a 2 mm grid moved the fitted
    VSCALING by < 0.07 % on six simulated heads) and clipped to
    +-``clip_mm`` (points farther out are outliers of the robust fit anyway).
    """
    mask, affine = mni152_intracranial()
    cropped = nib.Nifti1Image(mask.astype(np.uint8), affine).slicer[bounding_box(mask, margin=margin_mm)]
    inside = np.asarray(cropped.dataobj) > 0
    zooms = cropped.header.get_zooms()[:3]
    signed = ndimage.distance_transform_edt(~inside, sampling=zooms) - ndimage.distance_transform_edt(
        inside, sampling=zooms
    )
    signed = ndimage.gaussian_filter(signed.astype(np.float32), 1.0)
    coarse = nib.Nifti1Image(signed, cropped.affine).slicer[::step, ::step, ::step]
    return np.clip(np.asarray(coarse.dataobj), -clip_mm, clip_mm), coarse.affine


def save_template_inner_skull_distance(path) -> None:
    """Write :func:`compute_template_inner_skull_distance` as the package ships it (int16, 0.01 mm units)."""
    signed, affine = compute_template_inner_skull_distance()
    np.savez_compressed(path, distance_hundredths_mm=np.round(signed * 100).astype(np.int16), affine=affine)


@lru_cache(maxsize=1)
def template_inner_skull_distance() -> tuple[np.ndarray, np.ndarray]:
    """The shipped signed distance map to the MNI152 intracranial outline (mm) and its voxel-to-MNI affine.

    Computing it (:func:`compute_template_inner_skull_distance`) takes 3-6 s,
    which every NBV job would pay again, so the package ships it (436 kB);
    ``tests/test_nbv.py`` checks it against a fresh computation. Read-only (cached).
    """
    with (
        (resources.files("defacebench") / "data" / TEMPLATE_DISTANCE_FILE).open("rb") as handle,
        np.load(handle) as shipped,
    ):
        signed = shipped["distance_hundredths_mm"].astype(np.float32) / 100
        affine = np.asarray(shipped["affine"], dtype=float)
    signed.setflags(write=False)
    return signed, affine


def inner_skull_points(brain_mask: np.ndarray, affine: np.ndarray, surface_step: int = 2) -> np.ndarray:
    """Inner-skull (intracranial-mask outline) points of a subject, world mm."""
    return brain_surface(ndimage.binary_fill_holes(brain_mask), affine, surface_step)


def fit_skull_scaling(
    subject_points_mni: np.ndarray,
    *,
    vault_z_mm: float = SKULL_SETTINGS["vault_z_mm"],
    loss_scale_mm: float = SKULL_SETTINGS["loss_scale_mm"],
    min_points: int = SKULL_SETTINGS["min_points"],
) -> tuple[np.ndarray, dict]:
    """A 4x4 MNI-space correction (scales about the centroid + translation) putting the subject's skull surface on the template's.

    ``subject_points_mni`` are the subject's inner-skull points after the
    brain affine. Returns the matrix and fit diagnostics. Raises
    ``ValueError`` when there are too few points above ``vault_z_mm`` to fit.
    """
    subject = subject_points_mni[subject_points_mni[:, 2] > vault_z_mm]
    if len(subject) < min_points:
        raise ValueError(f"only {len(subject)} skull-surface points above MNI z = {vault_z_mm} mm (need {min_points})")
    signed, affine = template_inner_skull_distance()
    to_voxels = np.linalg.inv(affine)
    centre = subject.mean(axis=0)

    def matrix(theta):
        scales = np.exp(theta[:3])
        m = np.eye(4)
        m[:3, :3] = np.diag(scales)
        m[:3, 3] = centre - scales * centre + theta[3:6]
        return m

    def distances(theta):
        voxels = apply_affine(to_voxels @ matrix(theta), subject).T
        return ndimage.map_coordinates(signed, voxels, order=1, mode="nearest")

    before = distances(np.zeros(6))
    # x_scale: a 5 % scale change and a 2 mm shift move the surface by similar amounts
    res = optimize.least_squares(
        distances,
        np.zeros(6),
        loss="soft_l1",
        f_scale=loss_scale_mm,
        x_scale=np.r_[[0.05] * 3, [2.0] * 3],
        diff_step=1e-4,
    )
    after = distances(res.x)
    diagnostics = {
        "skull_points": int(len(subject)),
        "skull_scales": [float(v) for v in np.exp(res.x[:3])],
        "skull_rms_mm_before": float(np.sqrt(np.mean(before**2))),
        "skull_rms_mm_after": float(np.sqrt(np.mean(after**2))),
        "skull_inlier_fraction": float(np.mean(np.abs(after) < 3 * loss_scale_mm)),
        "skull_fit_converged": bool(res.success),
    }
    return matrix(res.x), diagnostics
