"""Simulated training/validation cohorts for the lesion and tumour arms.

Used by ``model_fitting/fit_lesion_model.py``, ``model_fitting/fit_tumour_model.py``,
``bench/bench_lesion_tumour.py`` and the tests: it calls the study's own
simulator (:mod:`defacebench.simulate`) so that the models are fitted on the
same kind of data the simulated cohorts of a study contain, but with seeds of
their own (fitting 9001, validation 9101), distinct from the study seeds.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

from ..cohorts import MODALITY_FILENAME, SIMULATED_MODALITIES
from ..io import load_image

FIT_SEED = 9001
VALIDATION_SEED = 9101
#: The grid of BraTS scans (SRI24 atlas space, 1 mm).
BRATS_SHAPE = (240, 240, 155)


def simulator_available() -> bool:
    """True when :mod:`defacebench.simulate` exports ``simulate_subject`` and ``prepare_anatomy``."""
    try:
        from .. import simulate
    except ImportError:
        return False
    return hasattr(simulate, "simulate_subject") and hasattr(simulate, "prepare_anatomy")


def simulate_cohort(
    kind: str, n_subjects: int, seed: int, out_dir: str | Path, settings: dict | None = None, prefix: str = "fit"
) -> list[dict]:
    """Simulate ``n_subjects`` of ``kind`` (``healthy``, ``ms`` or ``glioma``) under ``out_dir``; returns their truths.

    Subject ``i`` gets seed ``seed + i``; already simulated subjects are reused.
    Each returned dict has ``subject``, ``bids_root`` and the simulator's truth keys.
    """
    from .. import simulate
    from ..simulate.anatomy import is_current
    from ..simulate.model_version import MODEL_VERSION

    out_dir = Path(out_dir)
    anatomy = out_dir / "anatomy"
    if not is_current(anatomy):
        simulate.prepare_anatomy(anatomy)
    sim_settings = dict(settings or {})
    if "resolution_mm" in sim_settings:  # the fitting scripts' name for the simulator's voxel size
        sim_settings["voxel_size"] = sim_settings.pop("resolution_mm")
    voxel = float(sim_settings.get("voxel_size", 1.0))
    # subjects simulated from another version of the head model, or on another grid, are other subjects:
    # cache them apart (1 mm keeps its historical folder name)
    grid = "" if voxel == 1.0 else f"-{voxel:g}mm"
    bids = out_dir / f"{kind}-{seed}-model{MODEL_VERSION}{grid}"
    truths = []
    for i in range(n_subjects):
        subject = f"{prefix}{i + 1:03d}"
        done = bids / f".done-{subject}"
        if done.exists():
            import json

            truth = json.loads(done.read_text())
        else:
            truth = simulate.simulate_subject(kind, subject, seed + i, anatomy, bids, sim_settings)
            import json

            done.write_text(json.dumps(truth, default=float))
        truths.append({"subject": subject, "bids_root": str(bids), **truth})
    return truths


def subject_images(bids_root: str | Path, subject: str, kind: str) -> dict[str, nib.Nifti1Image]:
    """The simulated subject's images, by modality key."""
    anat = Path(bids_root) / f"sub-{subject}" / "anat"
    return {m: load_image(anat / f"sub-{subject}_{MODALITY_FILENAME[m]}") for m in SIMULATED_MODALITIES[kind]}


def truth_map(bids_root: str | Path, subject: str, kind: str) -> nib.Nifti1Image:
    """The simulated truth: lesion mask (ms) or tumour label map (glioma)."""
    desc = {"ms": "desc-lesion_mask", "glioma": "desc-tumour_dseg"}[kind]
    return load_image(
        Path(bids_root) / "derivatives" / "truth" / f"sub-{subject}" / "anat" / f"sub-{subject}_{desc}.nii.gz"
    )


# --- fallback phantoms ---------------------------------------------------------------------------
# Used only when defacebench.simulate is not installed: skull-stripped MNI-space phantoms built from
# nilearn's MNI152 tissue maps with inserted lesions or tumours. Tissue contrasts are textbook
# relative intensities (FLAIR: lesion > GM > WM >> CSF; T2: CSF > necrosis > non-enhancing > oedema
# > GM > WM; ceT1w: enhancing rim bright), with a smooth bias field and Rician-like noise.

_CONTRAST = {
    #          csf   gm    wm    les   nec   oed   nonenh enh
    "T1w": (0.30, 0.65, 1.00, 0.70, 0.30, 0.75, 0.55, 0.60),
    "ceT1w": (0.30, 0.65, 1.00, 0.70, 0.30, 0.75, 0.55, 1.40),
    "T2w": (2.00, 1.20, 0.80, 1.50, 2.10, 1.45, 1.80, 1.30),
    "FLAIR": (0.30, 1.15, 1.00, 1.65, 0.70, 1.75, 1.45, 1.40),
}


def _blob(shape, centre, radii, rng, roughness=0.25):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    r = sum(((g - c) / rad) ** 2 for g, c, rad in zip(grid, centre, radii))
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 4) * 8 * roughness
    return np.sqrt(r) + noise


def phantom_subject(kind: str, seed: int, zoom_mm: float = 1.0):
    """A skull-stripped phantom (images dict, truth array) in MNI space; see the module notes."""
    from scipy import ndimage

    from .lesion_features import _mni_maps

    rng = np.random.default_rng(seed)
    t1, gm, wm, affine = _mni_maps()
    brain = t1 > 0
    csf = np.clip(brain - gm - wm, 0, 1) * brain
    truth = np.zeros(t1.shape, np.uint8)
    if kind == "ms":
        wm_core = np.argwhere(wm > 0.9)
        for _ in range(rng.integers(8, 30)):
            c = wm_core[rng.integers(len(wm_core))]
            radii = rng.uniform(1.5, 6.0, 3)
            truth[(_blob(t1.shape, c, radii, rng, 0.05) < 1.0) & (wm > 0.4)] = 1
    else:
        wm_core = np.argwhere(ndimage.binary_erosion(wm > 0.8, iterations=6))
        c = wm_core[rng.integers(len(wm_core))]
        r_whole = rng.uniform(14, 26)
        d = _blob(t1.shape, c, rng.uniform(0.8, 1.2, 3) * r_whole, rng)
        core_frac = rng.uniform(0.45, 0.75)
        whole = (d < 1.0) & brain
        core = (d < core_frac) & brain
        truth[whole] = 2
        enhancing_rim = rng.uniform(0.15, 0.3) * core_frac
        if rng.random() < 0.75:  # enhancing glioblastoma: rim enhancement around necrosis
            truth[core] = 4
            truth[(d < core_frac - enhancing_rim) & brain] = 1
            patch = (_blob(t1.shape, c + rng.integers(-8, 9, 3), [r_whole * 0.5] * 3, rng) < 1.0) & core
            truth[patch & (truth == 4)] = 3
        else:  # non-enhancing (lower-grade-like) core
            truth[core] = 3
            truth[(d < core_frac * 0.4) & brain] = 1
    fractions = [csf, gm, wm]
    images = {}
    bias_base = ndimage.gaussian_filter(rng.standard_normal((8, 8, 8)), 1)
    for m, contrast in _CONTRAST.items():
        if kind == "ms" and m not in ("T1w", "FLAIR"):
            continue
        img = sum(f * c for f, c in zip(fractions, contrast[:3]))
        if kind == "ms":
            # lesions: per-lesion contrast (FLAIR lesion/WM ratio ~1.2-1.6), partial-volume edges
            les_labels, n_les = ndimage.label(truth == 1)
            level = np.concatenate([[0.0], rng.uniform(0.75, 1.0, n_les)])[les_labels] * contrast[3]
            frac = np.clip(ndimage.gaussian_filter((truth == 1).astype(np.float32), 0.7) * 1.3, 0, 1)
            img = (
                np.where(truth == 1, level, img) * frac
                + img * (1 - frac) * (truth == 0)
                + img * (1 - frac) * (truth == 1)
            )
            # white-matter texture (~5 %): real tissue is not uniform
            img = img * (
                1 + 0.05 * ndimage.gaussian_filter(rng.standard_normal(img.shape).astype(np.float32), 1.0) * 2.5
            )
        else:
            for lab, idx in ((1, 4), (2, 5), (3, 6), (4, 7)):
                img = np.where(truth == lab, contrast[idx], img)
            img = ndimage.gaussian_filter(img, 0.7) * brain
        bias = ndimage.zoom(bias_base, np.array(t1.shape) / 8, order=3)[: t1.shape[0], : t1.shape[1], : t1.shape[2]]
        img = img * np.exp(0.15 * bias / (np.abs(bias).max() + 1e-6))
        img = np.abs(img + rng.normal(0, 0.03, img.shape)) * brain * 400 * rng.uniform(0.8, 1.2)
        images[m] = nib.Nifti1Image(img.astype(np.float32), affine)
    if zoom_mm != 1.0:
        from nibabel.processing import resample_to_output

        images = {m: resample_to_output(i, [zoom_mm] * 3, order=1) for m, i in images.items()}
        ref = next(iter(images.values()))
        truth_img = resample_to_output(nib.Nifti1Image(truth, affine), [zoom_mm] * 3, order=0)
        truth = np.asarray(truth_img.dataobj)[: ref.shape[0], : ref.shape[1], : ref.shape[2]]
        affine = ref.affine
    return images, nib.Nifti1Image(truth.astype(np.uint8), affine)


def training_cohort(
    kind: str, n_subjects: int, seed: int, work: str | Path, settings: dict | None = None, source: str = "auto"
):
    """Yield ``(name, images, truth_image, truth_dict)`` for a fitting or validation cohort.

    ``source``: ``simulator`` (the study's simulator), ``phantom`` (the fallback
    phantoms above) or ``auto`` (the simulator when installed, else phantoms).
    """
    if source == "auto":
        source = "simulator" if simulator_available() else "phantom"
    if source == "simulator":
        for truth in simulate_cohort(kind, n_subjects, seed, work, settings):
            yield (
                truth["subject"],
                subject_images(truth["bids_root"], truth["subject"], kind),
                truth_map(truth["bids_root"], truth["subject"], kind),
                truth,
            )
    else:
        zoom = float((settings or {}).get("resolution_mm", 1.0))
        for i in range(n_subjects):
            images, truth = phantom_subject(kind, seed + i, zoom)
            yield f"phantom{seed + i}", images, truth, {"source": "phantom"}


def cohort_source(source: str = "auto") -> str:
    return ("simulator" if simulator_available() else "phantom") if source == "auto" else source


# --- BraTS-like variants (issue 25) ---------------------------------------------------------------


def rotation(rng, max_degrees: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def bias_field(shape, rng, amplitude: float) -> np.ndarray:
    """A smooth multiplicative field, exp of a random low-order polynomial scaled to +-amplitude."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    field = np.zeros(shape, np.float32)
    for i in range(3):
        field += rng.uniform(-1, 1) * grids[i]
        for j in range(i, 3):
            field += 0.5 * rng.uniform(-1, 1) * grids[i] * grids[j]
    field /= max(float(np.abs(field).max()), 1e-6)
    return np.exp(amplitude * field)


def thick_slices(data: np.ndarray, axis: int, slice_mm: float = 5.0) -> np.ndarray:
    """A thick-slice acquisition interpolated back to 1 mm: slab averages along ``axis``, linear upsampling."""
    k = int(slice_mm)
    slabs = ndimage.uniform_filter1d(data, k, axis=axis)
    idx = np.arange(k // 2, data.shape[axis], k)
    coarse = np.take(slabs, idx, axis=axis)
    positions = np.arange(data.shape[axis])
    out = np.apply_along_axis(lambda v: np.interp(positions, idx, v), axis, coarse)
    return out.astype(np.float32)


def to_int16_range(data: np.ndarray, mask: np.ndarray, rng, offset: bool = False) -> np.ndarray:
    top = float(np.percentile(data[mask], 99.5))
    scaled = data * (rng.uniform(300, 5000) / max(top, 1e-6))
    if offset:
        scaled = scaled + rng.uniform(-50, 200) * mask
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


#: What real skull-stripped glioma scans show that the simulated heads do not (issue 25: a forest fitted
#: on simulated gliomas labelled the brain's rim on one real scan and the falx, septum and ventricle
#: walls on another). ``dura_enhancement``: the dura, the falx and the cortical veins and sinuses
#: enhance on a ceT1w, and skull stripping leaves them at the brain's edge and in the interhemispheric
#: fissure (relative signal gain, range); ``flair_rim``: the brain's edge is often bright on FLAIR
#: (incompletely nulled CSF, inflow, leftovers of the stripping); ``shell_mm``: how deep these reach.
#: Tissue contrast (2026-12-03, issue 25; fixed before the refit it was made for was measured): each
#: image's contrast is changed by a power of its ratio to white matter (WM fixed: ``wm * (I / wm) **
#: gamma``), ``gamma`` drawn log-uniformly, on its own for every modality (the T1w and the ceT1w of one
#: patient are often different sequences, 2-D spin echo before and 3-D gradient echo after contrast in
#: TCGA's scans). The ranges are symmetric about 1 in log, i.e. the simulator's contrast sits in the
#: middle, because real protocols vary both ways: ``t1_gamma`` 0.5-2, T1w grey/white contrast from
#: that of a 1.5 T spin echo (GM/WM about 0.8-0.85, lower than the simulator's) to that of an
#: inversion-prepared 3-D gradient echo (MPRAGE, IR-SPGR, GM/WM about 0.6 or below, higher);
#: ``t2_gamma`` 0.67-1.5 for the T2w and the FLAIR: in a spin echo the log of a tissue's signal ratio
#: to white matter grows in proportion to the echo time, which ranges about 80-120 ms in clinical T2w
#: and FLAIR protocols (a power of 0.67-1.5 about the middle); field strength and TI add to it. An
#: earlier setting only lowered the T1w contrast (``t1_gamma`` 0.5-1, one of T1w/ceT1w) and left the
#: T2w and FLAIR as simulated: a ``wm-csf`` forest fitted with it labelled a higher-contrast phantom's
#: grey matter tumour (docs/validation.md). Ranges drawn per variant.
REAL_SCAN_CONFOUNDERS = {
    "dura_enhancement": (0.3, 0.9),
    "flair_rim": (0.1, 0.5),
    "shell_mm": (1.5, 3.0),
    "t1_gamma": (0.5, 2.0),
    "t2_gamma": (0.67, 1.5),
}


def real_scan_confounders(
    images: dict, brain: np.ndarray, dseg: np.ndarray, affine: np.ndarray, rng: np.random.Generator
) -> dict:
    """``images`` (arrays on one grid with ``brain`` and ``dseg``) with :data:`REAL_SCAN_CONFOUNDERS` drawn in."""
    from defacebench.simulate.anatomy import CSF, WM

    c = REAL_SCAN_CONFOUNDERS
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    depth = ndimage.distance_transform_edt(brain, sampling=zooms)
    shell = brain & (depth <= rng.uniform(*c["shell_mm"]))

    def patches(cover):
        noise = ndimage.gaussian_filter(rng.standard_normal(brain.shape).astype(np.float32), 6.0 / zooms)
        return noise > np.quantile(noise[shell], 1 - cover)

    # the interhemispheric fissure: CSF within 6 mm of the brain's mid-sagittal plane (world x), its walls
    x = (affine[0, 0] * np.arange(brain.shape[0]) + affine[0, 3])[:, None, None]
    xc = float(np.average(np.broadcast_to(x, brain.shape)[brain]))
    fissure = (dseg == CSF) & (np.abs(x - xc) <= 6.0) & brain
    falx = ndimage.binary_dilation(fissure, iterations=1) & brain
    out = {m: np.asarray(v, np.float32).copy() for m, v in images.items()}
    gain = rng.uniform(*c["dura_enhancement"])
    dura = (shell & patches(rng.uniform(0.3, 0.7))) | falx
    out["ceT1w"] = out["ceT1w"] * (1 + gain * ndimage.gaussian_filter(dura.astype(np.float32), 0.7))
    rim = shell & patches(rng.uniform(0.3, 0.8))
    out["FLAIR"] = out["FLAIR"] * (
        1 + rng.uniform(*c["flair_rim"]) * ndimage.gaussian_filter(rim.astype(np.float32), 1.0)
    )
    for m in out:
        lo, hi = c["t1_gamma"] if m in ("T1w", "ceT1w") else c["t2_gamma"]
        gamma = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # log-uniform: as often up as down
        wm = float(np.median(out[m][dseg == WM]))
        out[m] = wm * np.clip(out[m] / wm, 0, None) ** gamma
    return out


def brats_like(images: dict, truth_img, truth_dir: Path, subject: str, rng, thick: bool, confounders: bool = True):
    """(images, truth) of a simulated glioma subject as the BraTS challenge distributes real scans.

    Menze et al. 2015; Bakas et al. 2017: skull-stripped with a sharp edge (here the true brain with
    the ventricles and the sulcal CSF it encloses), resampled (linear) onto a 1 mm 240 x 240 x 155 LPS
    grid turned by up to 8 degrees, a multiplicative bias field of up to +-25 % per modality, each
    modality rescaled to an arbitrary int16 range; with ``thick`` the T1w, T2w and FLAIR were
    acquired with 5 mm slices along one axis (as many TCGA scans in BraTS were). ``truth_dir``: the
    subject's ``derivatives/truth/sub-*/anat``. With ``confounders`` the real-scan confounders
    (:data:`REAL_SCAN_CONFOUNDERS`) are drawn in first. Used by ``bench/bench_tumour_real_like.py`` and,
    as training-time augmentation, by ``model_fitting/fit_tumour_model.py``.
    """
    from defacebench.simulate.anatomy import CSF, GM, WM

    dseg_img = nib.load(truth_dir / f"sub-{subject}_dseg.nii.gz")
    dseg = np.asarray(dseg_img.dataobj)
    tumour = np.asarray(truth_img.dataobj) > 0
    tissue = np.isin(dseg, (GM, WM)) | tumour
    # a BraTS brain mask: brain tissue with the ventricles and the sulcal CSF it encloses, sharp edge
    closed = ndimage.binary_closing(tissue, structure=np.ones((3, 3, 3)), iterations=3)
    brain = ndimage.binary_fill_holes(closed | (tissue & (dseg == CSF))) & (np.isin(dseg, (CSF, GM, WM)) | tumour)
    brain = ndimage.binary_fill_holes(brain)
    if confounders:
        # on the truth's grid (a simulated FLAIR may have thick slices of its own)
        on_grid = {
            m: np.asarray(img.dataobj if img.shape == dseg.shape else resample_from_to(img, dseg_img, 1).dataobj)
            for m, img in images.items()
        }
        arrays = real_scan_confounders(on_grid, brain, dseg, dseg_img.affine, rng)
        images = {m: nib.Nifti1Image(arrays[m], dseg_img.affine) for m in images}
    centre = dseg_img.affine @ np.r_[ndimage.center_of_mass(brain), 1.0]
    R = rotation(rng, 8.0) @ np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = R
    affine[:3, 3] = centre[:3] + rng.uniform(-5, 5, 3) - R @ (np.asarray(BRATS_SHAPE) / 2.0)
    target = (BRATS_SHAPE, affine)
    mask = np.asarray(resample_from_to(nib.Nifti1Image(brain.astype(np.float32), dseg_img.affine), target, 1).dataobj)
    mask = mask > 0.5
    out = {}
    axis = int(rng.integers(3))
    for m, img in images.items():
        data = np.asarray(resample_from_to(img, target, 1).dataobj, np.float32)
        if thick and m != "ceT1w":
            data = thick_slices(data, axis)
        data = data * bias_field(BRATS_SHAPE, rng, 0.25) * mask
        out[m] = nib.Nifti1Image(to_int16_range(data, mask, rng), affine)
    truth = np.asarray(resample_from_to(truth_img, target, 0).dataobj).astype(np.uint8) * mask
    return out, nib.Nifti1Image(truth.astype(np.uint8), affine)
