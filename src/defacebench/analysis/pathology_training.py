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

from ..cohorts import MODALITY_FILENAME, SIMULATED_MODALITIES
from ..io import load_image

FIT_SEED = 9001
VALIDATION_SEED = 9101


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
