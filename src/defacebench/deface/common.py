"""What several defacing methods share: the template face region, running a command, small helpers.

The face region of a subject is PyDeface's face mask (``facemask.nii.gz``, 0 in
the face, shipped with its head template ``mean_reg2mean.nii.gz`` in the
pydeface wheel; Gulban et al., PyDeface) brought into the subject by an affine
registration of the template head to the subject's head with antspyx (Avants
et al. 2011, ANTs). It is computed once per subject from the full T1w and used
by PyDeface, the mri_deface approach and FaceMasking, and for the integrity
measure of every method.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path

import nibabel as nib
import numpy as np

from ..antsseed import seeded
from ..records import AnalysisFailure, failure_from_exception
from ..templates import pydeface_facemask, pydeface_head

#: antspyx affine settings: the fast settings of the shared dependency notes (iterations at the
#: 4x and 2x shrink levels only, 10 % random sampling), run on heads resampled to ``resolution_mm``
#: = 2 mm: about 5 s; the face region agrees with a 4x longer run (200/100/50 iterations, 25 %
#: sampling) with Dice 0.99 on IXI012 and otsu.
REGISTRATION = dict(
    type_of_transform="Affine",
    aff_metric="mattes",
    aff_iterations=(100, 50, 0),
    aff_shrink_factors=(4, 2, 1),
    aff_smoothing_sigmas=(2, 1, 0),
    aff_random_sampling_rate=0.1,
    random_seed=1,
)

#: The registered head is accepted when its linear scale lies in this range (adult heads).
PLAUSIBLE_SCALE = (0.7, 1.4)


def _to_ants(img: nib.Nifti1Image):
    """An antspyx image of ``img`` (float32), through a temporary file so ANTs reads the header itself."""
    from ..antslib import import_ants

    ants = import_ants()

    with tempfile.TemporaryDirectory(prefix="defacebench-") as tmp:
        path = os.path.join(tmp, "img.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), path)
        return ants.image_read(path)


def _from_ants(image, reference: nib.Nifti1Image) -> np.ndarray:
    """The voxel array of an antspyx image that lies on ``reference``'s grid, in nibabel's index order.

    ANTs reads a NIfTI file's voxel array in the file's own index order (it
    keeps the orientation in its direction matrix), so the array needs no
    reorientation; this is checked by the face-region tests on PSR, PIL and
    LPS images.
    """
    arr = image.numpy()
    if arr.shape != reference.shape[:3]:
        raise RuntimeError(f"ANTs returned shape {arr.shape} for a grid of shape {reference.shape[:3]}")
    return arr


def face_weights(subject: nib.Nifti1Image, resolution_mm: float = 2.0) -> tuple[np.ndarray, dict]:
    """Face membership of each voxel of ``subject`` (float in [0, 1]; 1 = face) and registration details.

    PyDeface registers its head template to the subject and interpolates its
    face mask (1 = keep) linearly onto the subject's grid; this returns
    ``1 - warped mask``, so that PyDeface's output is ``data * (1 - weights)``
    and the binary face region is ``weights > 0.5``. The registration runs on
    both heads resampled to ``resolution_mm`` (a face needs no finer
    alignment); the mask is then warped onto the full-resolution grid.

    Raises :class:`AnalysisFailure` (stage ``registration``) when ANTs errors,
    the head is placed implausibly (linear scale outside
    :data:`PLAUSIBLE_SCALE`) or the face falls outside the image.
    """
    from ..antslib import import_ants

    ants = import_ants()

    fixed_full = _to_ants(subject)
    moving_full = ants.image_read(str(pydeface_head()))
    facemask = ants.image_read(str(pydeface_facemask()))
    spacing = (float(resolution_mm),) * 3
    fixed = ants.resample_image(fixed_full, spacing, use_voxels=False, interp_type=0)
    moving = ants.resample_image(moving_full, spacing, use_voxels=False, interp_type=0)
    reg: dict = {}
    try:
        with seeded(REGISTRATION.get("random_seed", 1)):
            reg = ants.registration(fixed=fixed, moving=moving, **REGISTRATION)
        warped = ants.apply_transforms(
            fixed=fixed_full,
            moving=facemask,
            transformlist=reg["fwdtransforms"],
            interpolator="linear",
            defaultvalue=1.0,
        )
        matrix = np.asarray(ants.read_transform(reg["fwdtransforms"][0]).parameters[:9]).reshape(3, 3)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("registration", exc) from exc
    finally:
        for path in reg.get("fwdtransforms", []) + reg.get("invtransforms", []):
            if os.path.exists(path) and path.startswith(tempfile.gettempdir()):
                os.unlink(path)
    scale = float(abs(np.linalg.det(matrix)) ** (1 / 3))
    if not PLAUSIBLE_SCALE[0] < scale < PLAUSIBLE_SCALE[1]:
        raise AnalysisFailure("registration", f"template-to-subject registration diverged (linear scale {scale:.2f})")
    weights = np.clip(1.0 - _from_ants(warped, subject), 0.0, 1.0).astype(np.float32)
    if not (weights > 0.5).any():
        raise AnalysisFailure("registration", "the template face region falls outside the image")
    return weights, {
        "template": "pydeface mean_reg2mean.nii.gz + facemask.nii.gz",
        "registration": "antspyx affine",
        "resolution_mm": float(resolution_mm),
        "linear_scale": round(scale, 4),
    }


def face_region_mask(face_region: np.ndarray) -> np.ndarray:
    """The binary face region from face weights (``> 0.5``) or a mask that is already binary."""
    face_region = np.asarray(face_region)
    return face_region > 0.5 if face_region.dtype != bool else face_region


def need(value, what: str, failures: dict | None = None):
    """``value``, or the recorded failure that prevented it (``failures[what + '_failure']``) as AnalysisFailure."""
    if value is not None:
        return value
    stage, reason = (failures or {}).get(f"{what}_failure", ("deface", f"no {what.replace('_', ' ')} available"))
    raise AnalysisFailure(stage, reason)


def run_command(
    template: str, img: nib.Nifti1Image, extra: dict | None = None, *, name: str = "input.nii.gz", timeout: float = 3600
) -> np.ndarray:
    """Run a command template on ``img``; return the output's voxel array on ``img``'s grid.

    Placeholders: ``{input}``, ``{output}`` and the keys of ``extra``. The
    image is written to a temporary folder under its own (BIDS) ``name``, which
    some tools read, so the tool never sees or writes next to the user's file.
    A missing executable, a non-zero exit, or a missing output or one on
    another grid is an :class:`AnalysisFailure` (stage ``deface``).
    """
    with tempfile.TemporaryDirectory(prefix="defacebench-") as tmp:
        (Path(tmp) / "in").mkdir()
        src, dst = Path(tmp) / "in" / name, Path(tmp) / "output.nii.gz"
        nib.save(img, src)
        fields = {
            "input": shlex.quote(str(src)),
            "output": shlex.quote(str(dst)),
            **{k: shlex.quote(str(v)) for k, v in (extra or {}).items()},
        }
        try:
            command = template.format(**fields)
        except (KeyError, IndexError) as exc:
            raise ValueError(f"command template {template!r} has an unknown placeholder {exc}") from exc
        program = shlex.split(command)[0]
        if shutil.which(program) is None:
            raise AnalysisFailure("deface", f"tool not found: {program!r} is not on PATH")
        try:
            proc = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AnalysisFailure("deface", f"{program} did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise AnalysisFailure("deface", f"{program} exited with {proc.returncode}: {tail[0][:300]}")
        if not dst.exists():
            raise AnalysisFailure("deface", f"{program} wrote no output image at {{output}}")
        out = nib.load(str(dst))
        if out.shape[:3] != img.shape[:3] or not np.allclose(out.affine, img.affine, atol=1e-3):
            raise AnalysisFailure(
                "deface", f"{program} changed the image grid ({out.shape}, {nib.aff2axcodes(out.affine)})"
            )
        return np.asanyarray(out.dataobj).reshape(img.shape[:3])


def executable_version(program: str) -> str:
    """Where an external program was found (its version is tool-specific, its path is not)."""
    return shutil.which(program) or "not found"


#: The last few :func:`within_mm` results, keyed by a digest of the mask's voxels, shape, ``mm``
#: and zooms: a subject's images usually share the T1w's grid, so every image of a defacing
#: job asks for the same dilation of the same brain mask (about 1 s each on a 1 mm head).
_WITHIN_MM_RECENT: OrderedDict[bytes, np.ndarray] = OrderedDict()
_WITHIN_MM_KEEP = 2


def within_mm(mask: np.ndarray, mm: float, zooms) -> np.ndarray:
    """Voxels within ``mm`` millimetres of ``mask`` (a dilation by a ball, through a Euclidean distance map).

    Same result as :func:`defacebench.brain.dilate_mask` up to the ball's
    discretisation, but seconds faster on 1 mm grids: the distance map is
    computed on the mask's bounding box grown by ``mm``. A repeated call with the
    same voxels, ``mm`` and zooms returns a copy of the earlier result.
    """
    mask = np.ascontiguousarray(mask, bool)
    digest = hashlib.blake2b(mask.view(np.uint8).data, digest_size=16)
    digest.update(repr((mask.shape, float(mm), tuple(float(z) for z in zooms))).encode())
    key = digest.digest()
    if key not in _WITHIN_MM_RECENT:
        _WITHIN_MM_RECENT[key] = _within_mm(mask, mm, zooms)
        while len(_WITHIN_MM_RECENT) > _WITHIN_MM_KEEP:
            _WITHIN_MM_RECENT.popitem(last=False)
    _WITHIN_MM_RECENT.move_to_end(key)
    return _WITHIN_MM_RECENT[key].copy()


def _within_mm(mask: np.ndarray, mm: float, zooms) -> np.ndarray:
    from scipy import ndimage

    out = np.zeros(mask.shape, bool)
    if not mask.any():
        return out
    zooms = np.asarray(zooms, float)
    grow = np.ceil(mm / zooms).astype(int) + 1
    idx = np.nonzero(mask)
    box = tuple(slice(max(int(i.min()) - g, 0), min(int(i.max()) + g + 1, n)) for i, g, n in zip(idx, grow, mask.shape))
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=zooms) <= mm
    return out
