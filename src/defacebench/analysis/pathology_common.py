"""Pre-processing shared by the lesion (WMLV) and tumour (GBV) arms.

Both arms work on RAS-canonical float arrays (exact flips of the input, no
resampling) and need the same few steps: a brain mask (deepbet, Fisch et al.
2024, unless the images are already skull-stripped), N4 bias correction
(Tustison et al. 2010, IEEE TMI 29:1310) with fast settings, rigid
co-registration of one modality to another (antspyx; Avants et al. 2011,
NeuroImage 54:2033), intensity standardisation to normal white matter, and running a
configured external command.

Two pipelines (setting ``pipeline``, :data:`PIPELINE_NAMES`): ``modern`` (the default) takes
deepbet's brain mask, or the input's own brain when it is already skull-stripped, and places
atlas priors by registering the MNI152 brain to the subject's brain. ``classic`` takes the route of
the tools de Sitter et al. (2020) ran, which start from the whole head: LST's lpa runs on SPM12's
unified segmentation (Ashburner & Friston 2005, NeuroImage 26:839), whose affine registration to
the tissue priors and whose intensity model cover the whole head (head-tissue and air classes);
BraTumIA (Porz et al. 2014, PLoS One 9:e96873) skull-strips by registering a whole-head atlas to
the patient. Here the classic route is :func:`whole_head_to_mni` (the whole-head affine of
:mod:`.head_registration`, after FLIRT of the whole head) and :func:`whole_head_brain_mask` (the
BET-like surface inside the standard-space brain region it carries back, after ``bet -B``), the
same open re-implementations the classic NBV pipeline runs. Defacing removes part of the head they
see, which is how the classic pipelines can feel it. A skull-stripped image has no head to
register: the classic route refuses it with the reason (stage ``head_registration``), as the
classic NBV pipeline does.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..antslib import image_from_array
from ..arrays import box_affine
from ..brain import extract_brain
from ..io import load_image, save_image, to_canonical
from ..records import AnalysisFailure, failure_from_exception

#: Fast registration settings: both images are first resampled to ``resolution_mm``
#: (3 mm: ~1-3 s on 2 cores instead of 10-16 s with shrink factors on the 1 mm images),
#: then two levels run; the transform is applied to the full-resolution moving image.
#: The second level (3 mm) refines what the first found: 10 iterations rather than 50 halve a
#: registration (rigid, 1 mm head: 3.9 -> 2.0 s; the transform moved by ~0.001 mm, less than
#: two runs of one setting differ) and kept both arms' validation accuracy.
REGISTRATION_FAST = {
    "resolution_mm": 3.0,
    "aff_metric": "mattes",
    "aff_iterations": (100, 10),
    "aff_shrink_factors": (2, 1),
    "aff_smoothing_sigmas": (1, 0),
    "aff_random_sampling_rate": 0.2,
}


def canonical_array(img: nib.Nifti1Image) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Float32 data of ``img`` in RAS-canonical voxel order, with the canonical image."""
    canon = to_canonical(img)
    data = np.asarray(canon.get_fdata(dtype=np.float32))
    if data.ndim != 3:
        raise AnalysisFailure("input", f"expected a 3D image, got shape {data.shape}")
    data[~np.isfinite(data)] = 0.0
    return data, canon


def require(images: dict, modalities) -> None:
    """Raise :class:`AnalysisFailure` (stage ``input``) naming every missing or empty modality."""
    missing = [m for m in modalities if images.get(m) is None]
    if missing:
        raise AnalysisFailure("input", f"missing image(s): {', '.join(missing)}")
    for m in modalities:
        data = np.asanyarray(images[m].dataobj)
        if data.size == 0 or not np.isfinite(data).any() or np.nanmax(data) == np.nanmin(data):
            raise AnalysisFailure("input", f"{m} image is empty or constant")


def looks_skull_stripped(data: np.ndarray, zooms) -> bool:
    """True when the non-background region is brain-sized and background is one constant value.

    Skull-stripped images (BraTS, MNI-space research data) have an exactly
    constant background around a compact brain of roughly 800-2000 ml; a head
    image has noise and scalp everywhere.
    """
    background = np.median(np.concatenate([data[0].ravel(), data[-1].ravel(), data[:, 0].ravel(), data[:, -1].ravel()]))
    foreground = np.abs(data - background) > 1e-6 * max(1.0, float(np.abs(data).max()))
    volume_ml = foreground.sum() * float(np.prod(zooms)) / 1000.0
    return bool(300 <= volume_ml <= 2200 and np.mean(foreground) < 0.6)


def brain_mask(img: nib.Nifti1Image, data: np.ndarray, zooms, backend: str = "deepbet") -> tuple[np.ndarray, str]:
    """Brain mask on the canonical grid of ``img`` and how it was made.

    A skull-stripped input keeps its own brain (the non-background voxels, holes
    filled); otherwise :func:`defacebench.brain.extract_brain` runs on ``img``.
    """
    if looks_skull_stripped(data, zooms):
        background = np.median(data[0])
        mask = np.abs(data - background) > 1e-6 * max(1.0, float(np.abs(data).max()))
        mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=1))
        return largest_component(mask), "input is skull-stripped"
    mask = extract_brain(img, backend=backend)  # on img's own grid
    canon_mask = np.asarray(to_canonical(nib.Nifti1Image(mask.astype(np.uint8), img.affine)).dataobj) > 0
    return ndimage.binary_fill_holes(canon_mask), backend


#: The pipelines of the lesion and tumour arms; each arm maps them to its own components.
PIPELINE_NAMES = ("modern", "classic")

#: Records' name of the classic brain extraction (what :func:`whole_head_brain_mask` runs).
WHOLE_HEAD_BRAIN_MASK = "bet-like inside the standard-space brain ROI (whole-head affine)"


def resolve_pipeline(pipeline: str | None, presets: dict[str, dict], explicit: dict) -> tuple[str, dict]:
    """The pipeline's name and component settings: ``presets[pipeline]`` with the explicit settings on top.

    ``explicit``: component settings given by the caller (None: not given). Without ``pipeline``
    the name is the preset the settings match, or ``custom`` (as the NBV arm names them); an
    unknown pipeline is a configuration error (ValueError), not a study failure.
    """
    if pipeline is not None and pipeline not in presets:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose from {sorted(presets)}")
    given = {k: v for k, v in explicit.items() if v is not None}
    settings = {**presets[pipeline or "modern"], **given}
    if pipeline is None:
        pipeline = next((name for name, preset in presets.items() if preset == settings), "custom")
    return pipeline, settings


def head_region(data: np.ndarray) -> np.ndarray:
    """The head: voxels above BET's head threshold ``t2 + 0.1 (t98 - t2)`` (Smith 2002), enclosed holes filled.

    The same threshold that :func:`.head_registration.head_tissue_ml` counts; the region a
    whole-head intensity model sees (the brain and everything around it that is not air).
    """
    from .bet_like import head_threshold, robust_range

    return ndimage.binary_fill_holes(data > head_threshold(*robust_range(data)))


def whole_head_to_mni(head: nib.Nifti1Image, arm: str) -> np.ndarray:
    """4x4 RAS map from the subject's whole head to MNI152 (:func:`.head_registration.head_to_mni`).

    ``head``: a RAS-canonical image of the whole head (the grid the arm works on). An image that
    holds a brain rather than a head (less than :data:`.head_registration.MIN_HEAD_ML` above the
    head threshold: skull-stripped) is refused at stage ``head_registration`` with the figures, and
    ``arm`` names what needed the head; the whole-head affine of a brain gives a meaningless ROI
    and meaningless prior placement. A failed registration is a failure at the same stage.
    """
    from . import head_registration as head_reg

    needed_by = (
        f"The classic {arm} pipeline starts with a whole-head registration and needs a head; the modern "
        "pipeline (deepbet, or the input's own brain) measures such images"
    )
    try:
        return head_reg.head_to_mni(head, stage="head_registration", needed_by=needed_by)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("head_registration", exc) from exc


def whole_head_brain_mask(head: nib.Nifti1Image, head_to_mni: np.ndarray) -> tuple[np.ndarray, dict]:
    """The classic brain mask on ``head``'s (canonical) grid, holes filled, and its details for the record.

    :func:`.head_registration.bet_like_in_standard_space_roi`: the BET-like surface (Smith 2002)
    grown inside the dilated MNI152 brain region carried back by the whole-head affine
    ``head_to_mni`` (after ``bet -B``'s ``standard_space_roi``).
    """
    from . import head_registration as head_reg

    try:
        mask, info = head_reg.bet_like_in_standard_space_roi(head, head_to_mni)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("brain_extraction", exc) from exc
    return ndimage.binary_fill_holes(mask), info


def head_registration_record(image: str) -> dict:
    """What a record says about the classic pipeline's whole-head registration: its method and the image registered."""
    from .head_registration import HEAD_AFFINE_SETTINGS, METHOD

    return {
        "method": METHOD,
        "image": image,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in HEAD_AFFINE_SETTINGS.items()},
    }


def json_scalar(value):
    """A numpy scalar in a record's parameters as its Python value (``json.dumps``' ``default``)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (empty stays empty)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def n4_correct(
    data: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray,
    threads: int = 1,
    shrink_factor: int | None = None,
    fit_region: np.ndarray | None = None,
) -> np.ndarray:
    """N4 bias-corrected ``data`` inside ``mask``, 0 outside (:func:`defacebench.analysis.bias.n4_field`).

    The field is fitted on ``fit_region`` (default: ``mask``): the classic lesion pipeline fits it
    on the whole head (:func:`head_region`), as unified segmentation estimates its bias field
    from every voxel of the image (Ashburner & Friston 2005).

    Fast settings, shared with the NBV arm (:data:`defacebench.analysis.bias.N4_SETTINGS`).
    ``shrink_factor`` overrides their 4: N4 fits the field on the image subsampled by that factor
    along every axis, so only a caller whose images are on a fine isotropic grid may raise it (see
    :data:`defacebench.analysis.tumour.N4_SHRINK_FACTOR`). The field is divided out of the data as
    they are, which keeps the intensity scale for a ratio standardisation afterwards.
    """
    from .bias import N4_SETTINGS, n4_field  # imports ANTs: not at this module's import

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))
    settings = {**N4_SETTINGS, **({"shrink_factor": shrink_factor} if shrink_factor else {})}
    try:
        field = n4_field(image_from_array(data, affine), mask if fit_region is None else fit_region, **settings)
    except (RuntimeError, ValueError) as exc:
        raise failure_from_exception("bias_correction", exc) from exc
    return np.where(mask, data / np.where(mask, field, 1.0), 0.0).astype(np.float32)


def same_grid(a: nib.Nifti1Image, b: nib.Nifti1Image, tol: float = 1e-3) -> bool:
    """True when two (canonical) images share shape and affine."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=tol)


def coarse(image, resolution_mm: float = REGISTRATION_FAST["resolution_mm"]):
    """Ants ``image`` resampled (linear) to isotropic ``resolution_mm`` voxels: what a registration runs on."""
    from ..antslib import import_ants

    ants = import_ants()

    try:
        return ants.resample_image(image, (resolution_mm,) * 3, False, 0)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("registration", exc) from exc


def register(fixed, moving, type_of_transform: str = "Rigid", threads: int = 1, fixed_low=None, **settings):
    """Register ants image ``moving`` to ``fixed`` at coarse resolution; returns the forward transforms.

    Settings default to :data:`REGISTRATION_FAST`; a failing registration is a
    study failure (stage ``registration``). ``fixed_low`` is ``fixed`` already
    made :func:`coarse` at the same resolution, so that several images registered
    to one fixed image resample it once.
    """
    from ..antslib import import_ants

    ants = import_ants()

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))
    options = {**REGISTRATION_FAST, **settings}
    resolution = options.pop("resolution_mm")
    # a fixed sampling seed makes the random metric sampling, hence the result, repeatable
    previous_seed = ants.config._random_seed
    ants.config._random_seed = options.pop("random_seed", 20200101)
    try:
        fixed_low = coarse(fixed, resolution) if fixed_low is None else fixed_low
        moving_low = coarse(moving, resolution)
        # transforms go to a private folder removed at exit, not loose files in the system temp dir
        workdir = tempfile.mkdtemp(prefix="defacebench-ants-")
        atexit.register(shutil.rmtree, workdir, True)
        reg = ants.registration(
            fixed_low,
            moving_low,
            type_of_transform=type_of_transform,
            outprefix=os.path.join(workdir, "reg_"),
            **options,
        )
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("registration", exc) from exc
    finally:
        ants.config._random_seed = previous_seed
    return reg["fwdtransforms"]


def apply_transforms(fixed, moving, transforms, interpolator: str = "linear") -> np.ndarray:
    """``moving`` resampled onto ``fixed``'s grid through ``transforms`` (numpy array)."""
    from ..antslib import import_ants

    ants = import_ants()

    try:
        out = ants.apply_transforms(fixed, moving, transforms, interpolator=interpolator).numpy().astype(np.float32)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise failure_from_exception("registration", exc) from exc
    if not np.isfinite(out).all():
        raise AnalysisFailure("registration", "registration produced non-finite values")
    return out


def rigid_registrar(
    fixed: np.ndarray, fixed_affine: np.ndarray, box: tuple[slice, ...] | None = None, threads: int = 1
):
    """A function ``(moving, moving_affine) -> array`` registering images rigidly to ``fixed``.

    Each moving image is registered (Mattes MI, fast settings) and resampled onto
    ``fixed``'s grid, or onto its part ``box`` only (the result is then the crop,
    the same values as cropping the whole-grid result, without interpolating the
    voxels that are thrown away). The coarse copy of ``fixed`` that every
    registration runs on is made once, not once per moving image.
    """
    # ITK's thread count is set before the first ITK work (the coarse copy), as register() sets it before its own
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))
    fixed_ants = image_from_array(fixed, fixed_affine)
    fixed_low = coarse(fixed_ants)
    if box is None:
        target, shape = fixed_ants, fixed.shape
    else:
        target, shape = image_from_array(fixed[box], box_affine(fixed_affine, box)), fixed[box].shape

    def register_one(moving: np.ndarray, moving_affine: np.ndarray) -> np.ndarray:
        moving_ants = image_from_array(moving, moving_affine)
        transforms = register(fixed_ants, moving_ants, "Rigid", threads, fixed_low=fixed_low)
        out = apply_transforms(target, moving_ants, transforms)
        if out.shape != shape:
            raise AnalysisFailure("registration", "registration produced an image of the wrong shape")
        return out

    return register_one


def resample_to(
    moving: np.ndarray, moving_affine: np.ndarray, fixed_shape, fixed_affine: np.ndarray, order: int = 1
) -> np.ndarray:
    """Resample ``moving`` onto a fixed grid using the images' affines only (no registration)."""
    vox = np.linalg.inv(moving_affine) @ fixed_affine
    return ndimage.affine_transform(
        moving, vox[:3, :3], vox[:3, 3], output_shape=tuple(fixed_shape), order=order
    ).astype(np.float32)


def filter_margin(sigma_mm: float, zooms, truncate: float = 4.0) -> tuple[int, ...]:
    """Margin (voxels per axis) of the brain's box on which masked Gaussian filters equal the whole grid's.

    scipy's Gaussian reaches ``r = int(truncate * sigma + 0.5)`` voxels and reads
    the array mirrored past its edge (mode ``reflect``). For an input that is zero
    outside the brain, a kernel centred on a brain voxel (at least ``m`` voxels
    inside the box) reads mirrored values from at most ``r - m - 1`` voxels inside
    the edge: zeros, as on the whole grid, once ``m >= r / 2``. Separable passes
    keep this: a pass spreads values along its own axis only. At least 1, so that
    the box's outer layer is background, as the whole grid's outside is, for
    distance maps, hole filling and dilations.
    """
    return tuple(max(1, (int(truncate * sigma_mm / float(z) + 0.5) + 1) // 2) for z in zooms)


def white_matter_reference(t1: np.ndarray, mask: np.ndarray, zooms, erosion_mm: float = 3.0) -> np.ndarray:
    """Voxels that are almost surely normal white matter, chosen on the T1w alone.

    On a T1w, white matter is the brightest brain tissue and tumour, lesions,
    oedema, grey matter and CSF are darker; the voxels between the 60th and 95th
    intensity percentiles of the brain, away from its surface (``erosion_mm``,
    where partial volume with the background lies), are white matter in healthy
    and in diseased brains alike, whatever the scanner's intensity scale.
    """
    inner = ndimage.binary_erosion(mask, iterations=max(1, int(round(erosion_mm / min(zooms)))))
    if inner.sum() < 1000:
        inner = mask
    low, high = np.percentile(t1[inner], [60, 95])
    return inner & (t1 >= low) & (t1 <= high)


def white_matter_standardise(data: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Intensities divided by their median in normal white matter (``reference``), 0 outside ``mask``.

    A one-landmark histogram standardisation (Nyul et al. 2000, IEEE TMI 19:143;
    Shinohara et al. 2014, NeuroImage Clin 6:9, "statistical principles" 2 and 5:
    a common tissue as the reference, robust to pathology): every modality is
    expressed relative to its own normal-appearing white matter (WM = 1), the
    scale in which tissue contrasts are tabulated. Unlike median/IQR of the whole
    brain it does not depend on how much grey matter, CSF or pathology the brain
    holds, nor on whether the image was skull-stripped.
    """
    values = data[reference]
    if values.size < 100:
        raise AnalysisFailure("intensity_standardisation", "too few white-matter voxels to standardise intensities")
    wm = float(np.median(values))
    if not np.isfinite(wm) or wm <= 0:
        raise AnalysisFailure("intensity_standardisation", "white matter has no positive intensity")
    return np.where(mask, data / wm, 0.0).astype(np.float32)


def run_command(
    template: str, inputs: dict[str, nib.Nifti1Image], stage: str, timeout: float | None = None
) -> nib.Nifti1Image:
    """Run an external tool given as a command template; return the image it wrote.

    ``template`` names inputs by modality in braces (``{flair}``, ``{t1w}``,
    ``{cet1w}``, ``{t2w}``) and the output file as ``{output}``; the inputs are
    written to a temporary folder as NIfTI first. A missing executable, a
    non-zero exit or a missing output is a study failure.
    """
    with tempfile.TemporaryDirectory(prefix="defacebench-tool-") as tmp:
        names = {}
        for modality, img in inputs.items():
            path = Path(tmp) / f"{modality}.nii.gz"
            save_image(img, path)
            names[modality.lower()] = shlex.quote(str(path))
        output = Path(tmp) / "output.nii.gz"
        names["output"] = shlex.quote(str(output))
        names["outdir"] = shlex.quote(tmp)
        try:
            command = template.format(**names)
        except KeyError as exc:
            raise AnalysisFailure(stage, f"command template names an unknown placeholder {exc}") from exc
        try:
            result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AnalysisFailure(stage, f"external command timed out after {timeout} s") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            raise AnalysisFailure(stage, f"external command exited with {result.returncode}: {tail[0][:300]}")
        if not output.exists():
            raise AnalysisFailure(stage, "external command wrote no output image")
        out = load_image(output)
        return nib.Nifti1Image(np.asarray(out.dataobj), out.affine, out.header)
