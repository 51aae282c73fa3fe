"""One simulated subject: pose, deformation, atrophy, pathology, contrast, bias, noise; images and truth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import __version__, io
from ..cohorts import MODALITY_FILENAME, SIMULATED_MODALITIES
from . import pathology
from .anatomy import BACKGROUND, CSF, GM, HEAD, WM, load_anatomy

COHORT_KINDS = ("healthy", "ms", "glioma")

DEFAULTS = {
    "voxel_size": 1.0,
    "difficulty": {"max_pitch_deg": 15.0, "chin_cut_probability": 0.3, "thick_slice_flair_probability": 0.3,
                   "noise_level": 0.03},
}

#: Mean intensity (relative to T1w white matter = 1) of each tissue per modality, jittered per subject.
CONTRAST = {
    #           CSF   GM    WM    lesion necrosis oedema nonenh enh
    "T1w":   (0.30, 0.62, 1.00, 0.55, 0.25, 0.70, 0.55, 0.60),
    "ceT1w": (0.30, 0.62, 1.00, 0.55, 0.25, 0.70, 0.60, 1.45),
    "T2w":   (1.60, 0.85, 0.60, 1.20, 1.50, 1.25, 1.05, 0.95),
    "FLAIR": (0.15, 0.80, 0.62, 1.40, 0.50, 1.25, 1.15, 1.00),
}
#: Non-brain head tissue: template T1w intensity mapped per modality (fat stays bright in T2w, dimmer in FLAIR).
HEAD_GAIN = {"T1w": 1.0, "ceT1w": 1.0, "T2w": 0.8, "FLAIR": 0.6}


def subject_rng(seed: int, subject: str) -> np.random.Generator:
    """A generator determined by the cohort seed and the subject label."""
    digest = hashlib.sha256(f"{seed}:{subject}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _rotation(pitch, roll, yaw):
    p, r, y = np.deg2rad([pitch, roll, yaw])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_field(shape, rng, control=6, amplitude=1.0):
    coarse = rng.normal(0, 1, (control,) * 3)
    field = ndimage.zoom(coarse, [s / control for s in shape], order=3)[: shape[0], : shape[1], : shape[2]]
    field = np.pad(field, [(0, max(0, s - f)) for s, f in zip(shape, field.shape)], mode="edge")
    return (amplitude * field / max(field.std(), 1e-6)).astype(np.float32)


def _pose(rng, difficulty):
    scale = rng.uniform(0.96, 1.09) * (1 + rng.uniform(-0.03, 0.03, 3))
    pitch = rng.uniform(-1, 1) * difficulty["max_pitch_deg"]
    rotation = _rotation(pitch, rng.uniform(-5, 5), rng.uniform(-5, 5))
    return rotation @ np.diag(scale), pitch, rng.uniform(-8, 8, 3)


def simulate_subject(kind: str, subject: str, seed: int, anatomy_dir: Path, bids_root: Path, settings: dict) -> dict:
    """Simulate one subject of a ``kind`` cohort; write its BIDS images and ground truth; return the truth."""
    if kind not in COHORT_KINDS:
        raise ValueError(f"unknown cohort kind {kind!r}; choose from {COHORT_KINDS}")
    settings = {**DEFAULTS, **(settings or {})}
    difficulty = {**DEFAULTS["difficulty"], **(settings.get("difficulty") or {})}
    voxel = float(settings["voxel_size"])
    rng = subject_rng(seed, subject)
    anatomy = load_anatomy(anatomy_dir)
    head_affine = anatomy["affine"]

    # -- pose and field of view: output voxel -> subject world -> template world
    linear, pitch, shift = _pose(rng, difficulty)
    fov = np.array([176.0, 240.0, 240.0])
    chin_cut = rng.random() < difficulty["chin_cut_probability"]
    shape = np.round(fov / voxel).astype(int)
    centre_world = head_affine[:3, :3] @ (np.array(anatomy["head"].shape) / 2) + head_affine[:3, 3]
    fov_shift = rng.uniform(-6, 6, 3) + np.array([0, 0, rng.uniform(20, 35) if chin_cut else rng.uniform(-8, 4)])
    out_affine = np.diag([voxel, voxel, voxel, 1.0])
    out_affine[:3, 3] = centre_world + fov_shift - voxel * shape / 2
    # template world of each output voxel: x_t = inv(linear) (x_s - c - shift) + c, plus smooth deformation
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = out_affine[:3, :3] @ idx + out_affine[:3, 3:4]
    template_world = np.linalg.inv(linear) @ (world - centre_world[:, None] - shift[:, None]) + centre_world[:, None]
    template_vox = np.linalg.inv(head_affine)[:3, :3] @ template_world + np.linalg.inv(head_affine)[:3, 3:4]
    coarse_shape = tuple(max(2, s // 4) for s in shape)
    for axis in range(3):
        field = _smooth_field(coarse_shape, rng, amplitude=2.0)
        field = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse_shape)], order=1)[: shape[0], : shape[1], : shape[2]]
        template_vox[axis] += field.reshape(-1)
    del idx, world, template_world

    def sample(volume, order=1):
        return ndimage.map_coordinates(volume, template_vox, order=order, mode="constant", cval=0.0).reshape(shape)

    head = sample(anatomy["head"])
    gm, wm, icv = sample(anatomy["gm"]), sample(anatomy["wm"]), sample(anatomy["icv"])
    del template_vox

    # -- atrophy: thinner cortex and larger CSF spaces (healthy cohorts span ~1,300-1,650 ml NBV)
    gm_factor = rng.uniform(0.4, 0.9) if kind == "healthy" else rng.uniform(0.55, 0.85)
    wm_factor = rng.uniform(0.75, 1.0)
    csf = np.clip(icv - gm - wm, 0, 1) + 0.05
    labels = np.full(shape, BACKGROUND, np.uint8)
    head_level = np.percentile(anatomy["head"][anatomy["head"] > 0], 99)
    labels[head > 0.08 * head_level] = HEAD
    inside = icv > 0.5
    tissue = np.argmax(np.stack([csf, gm * gm_factor, wm * wm_factor]), axis=0)
    labels[inside] = np.array([CSF, GM, WM], np.uint8)[tissue[inside]]

    zooms = (voxel,) * 3
    lesion = np.zeros(shape, bool)
    tumour = np.zeros(shape, np.uint8)
    if kind == "ms":
        lesion = pathology.white_matter_lesions(labels, zooms, rng, float(np.exp(rng.uniform(np.log(0.5), np.log(40)))))
    elif kind == "glioma":
        tumour = pathology.glioblastoma(labels, zooms, rng, float(rng.uniform(10, 120)))

    # -- intensities per modality
    head_norm = head / np.percentile(head[labels == WM], 50) if (labels == WM).any() else head
    bias = np.exp(_smooth_field(tuple(max(2, s // 8) for s in shape), rng, control=3, amplitude=0.12))
    bias = ndimage.zoom(bias, [s / b for s, b in zip(shape, bias.shape)], order=1)[: shape[0], : shape[1], : shape[2]]
    noise_level = difficulty["noise_level"]
    images = {}
    for modality in SIMULATED_MODALITIES[kind]:
        jitter = 1 + rng.uniform(-0.05, 0.05, 8)
        c = np.asarray(CONTRAST[modality]) * jitter
        data = np.where(labels == HEAD, head_norm * HEAD_GAIN[modality], 0).astype(np.float32)
        data[labels == CSF], data[labels == GM], data[labels == WM] = c[0], c[1], c[2]
        data[lesion] = c[3]
        for label, value in ((pathology.NECROSIS, c[4]), (pathology.OEDEMA, c[5]),
                             (pathology.NONENHANCING, c[6]), (pathology.ENHANCING, c[7])):
            data[tumour == label] = value
        texture = ndimage.gaussian_filter(rng.normal(0, 0.03, shape).astype(np.float32), 1.0)
        data = ndimage.gaussian_filter(data * (1 + texture), 0.6 / voxel) * bias
        sigma = noise_level * c[2]
        data = np.sqrt((data + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
        affine = out_affine.copy()
        if modality == "FLAIR" and rng.random() < difficulty["thick_slice_flair_probability"]:
            factor = max(1, int(round(rng.uniform(3, 5) / voxel)))
            n = (shape[2] // factor) * factor
            data = data[:, :, :n].reshape(shape[0], shape[1], n // factor, factor).mean(-1)
            affine = out_affine @ np.diag([1, 1, factor, 1.0])
            affine[:3, 3] += out_affine[:3, 2] * (factor - 1) / 2
        images[modality] = nib.Nifti1Image(np.round(data * 1000).clip(0, 32767).astype(np.int16), affine)

    # -- truth
    voxel_ml = voxel**3 / 1000
    truth = {
        "participant_id": f"sub-{subject}", "kind": kind, "seed": seed, "voxel_size_mm": voxel,
        "gm_ml": float((labels == GM).sum() * voxel_ml), "wm_ml": float((labels == WM).sum() * voxel_ml),
        "csf_ml": float((labels == CSF).sum() * voxel_ml),
        "pitch_deg": float(pitch), "chin_cut": bool(chin_cut), "head_scale": float(np.linalg.det(linear) ** (1 / 3)),
    }
    truth["brain_ml"] = truth["gm_ml"] + truth["wm_ml"]
    truth["vscaling"] = float(anatomy["head_to_mni_det"] / abs(np.linalg.det(linear)))
    truth["nbv_ml"] = truth["brain_ml"] * truth["vscaling"]
    if kind == "ms":
        truth["lesion_ml"] = float(lesion.sum() * voxel_ml)
    if kind == "glioma":
        for name, label in (("necrosis", 1), ("oedema", 2), ("nonenhancing", 3), ("enhancing", 4)):
            truth[f"{name}_ml"] = float((tumour == label).sum() * voxel_ml)
        truth["tumour_core_ml"] = truth["necrosis_ml"] + truth["nonenhancing_ml"] + truth["enhancing_ml"]
        truth["whole_tumour_ml"] = truth["tumour_core_ml"] + truth["oedema_ml"]
    truth["flair_slice_mm"] = float(abs(images["FLAIR"].header.get_zooms()[2])) if "FLAIR" in images else None

    # -- write: images, sidecars, ground truth derivatives
    bids_root = Path(bids_root)
    anat = bids_root / f"sub-{subject}" / "anat"
    for modality, img in images.items():
        path = anat / f"sub-{subject}_{MODALITY_FILENAME[modality]}"
        img.header.set_xyzt_units("mm", "sec")
        io.save_image(img, path)
        io.write_json({"Modality": "MR", "MagneticFieldStrength": 3,
                       "SliceThickness": float(img.header.get_zooms()[2]),
                       "GeneratedBy": [{"Name": "defacebench.simulate", "Version": __version__}],
                       "SimulationSeed": seed}, path.with_name(path.name.replace(".nii.gz", ".json")))
    derivs = bids_root / "derivatives" / "truth" / f"sub-{subject}" / "anat"
    io.save_image(nib.Nifti1Image(labels, out_affine), derivs / f"sub-{subject}_dseg.nii.gz")
    if kind == "ms":
        io.save_image(nib.Nifti1Image(lesion.astype(np.uint8), out_affine), derivs / f"sub-{subject}_desc-lesion_mask.nii.gz")
    if kind == "glioma":
        io.save_image(nib.Nifti1Image(tumour, out_affine), derivs / f"sub-{subject}_desc-tumour_dseg.nii.gz")
    io.write_json(truth, derivs / f"sub-{subject}_truth.json")
    return truth
