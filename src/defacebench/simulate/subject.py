"""One simulated subject: pose, deformation, atrophy, pathology, contrast; its images and ground truth.

Everything random comes from one generator seeded by (cohort seed, subject
label), so the same seed gives byte-identical files. The head-space model is
read from :func:`~defacebench.simulate.anatomy.prepare_anatomy`'s output and
resampled once per subject; no registration runs here.

True NBV (SIENAX-style; Smith et al. 2002, NeuroImage 17:479):
``nbv_ml = (GM + WM volume in subject space, lesions counted as WM) x vscaling``
with ``vscaling = MNI152 intracranial volume / true intracranial volume``
(CSF + GM + WM labels). SIENAX's skull-constrained scaling brings the
subject's skull onto the template's; for heads that share the template's
shape, as simulated ones do up to a smooth warp, that scaling is the ratio of
intracranial volumes. The MNI152 side is
:func:`defacebench.templates.mni152_intracranial_ml`, the region the NBV arm
fits to. (An earlier definition, ``head_to_mni_det / det(pose)``, inherited the
+2.5 % bias of the brain-to-brain registration that placed the MNI152 maps in
the head template, and ignored the warp's own volume change, -1 to +6 %
measured on 6 subjects; ``vscaling_pose`` keeps it for comparison.)
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from ..arrays import bounding_box
from ..cohorts import MODALITY_FILENAME, SIMULATED_MODALITIES
from ..templates import mni152_intracranial_ml
from . import contrast, dataset, deform, mimics, pathology, realism
from .anatomy import CSF, GM, HEAD, MAX_DISTANCE_MM, WM, load_anatomy

COHORT_KINDS = ("healthy", "ms", "glioma")
#: Cohorts whose images show the normal lesion/tumour mimics (:mod:`.mimics`): those with FLAIR and
#: ceT1w, where the mimics are visible; the healthy cohort has a T1w only, on which they hardly show,
#: so its images (and the NBV arm's validation on them) stay as they were.
MIMIC_KINDS = ("ms", "glioma")

DEFAULT_DIFFICULTY = {
    "max_pitch_deg": 15.0,  # head nodding, uniform in +-max
    "chin_cut_probability": 0.3,  # field of view ends above the chin
    "thick_slice_flair_probability": 0.3,  # 2-D FLAIR with 3-5 mm slices
    "noise_level": 0.03,  # Rician noise s.d. relative to WM signal (x 0.7-1.4 per subject)
    "bias_level": 0.12,  # s.d. of the log bias field
    "warp_mm": 2.5,  # s.d. of the smooth non-linear displacement
    "reorient_probability": 0.25,  # images stored in LPS/LAS/PIL/PSR voxel order instead of RAS
}
#: ``head_realism`` (:mod:`.realism`) is off unless a study turns it on: the default cohorts stay as they were.
DEFAULTS = {"voxel_size": 1.0, "difficulty": DEFAULT_DIFFICULTY, "head_realism": None}

#: Atrophy levels 0 and 1: grey matter within this distance (mm) of sulcal/extracerebral CSF, and brain
#: within this distance of the ventricles, becomes CSF (linear in between). Calibrated on the model so that
#: healthy subjects' true NBV spans about 1,300-1,650 ml (bench/bench_simulate.py reports the spread); the
#: first ~1 mm of the cortical distance only reaches the voxels next to CSF.
CORTICAL_THINNING_MM = (1.2, 2.6)
VENTRICLE_ENLARGEMENT_MM = (2.0, 6.0)
#: Atrophy level range per cohort kind.
ATROPHY_RANGE = {"healthy": (0.0, 1.0), "ms": (0.15, 0.8), "glioma": (0.0, 0.6)}
#: Lesion load (ml, log-uniform) and glioblastoma core volume (ml, log-uniform).
LESION_ML = (0.5, 40.0)
TUMOUR_CORE_ML = (10.0, 120.0)
#: Voxel orders an image may be stored in (real data arrive in all of these).
ORIENTATIONS = ("LPS", "LAS", "PIL", "PSR")
#: The face shape is drawn from its own stream of the subject's seed, so that giving faces a shape
#: changed no other draw: pose, brain, pathology, contrast and noise are those of the same seed before.
FACE_SHAPE_STREAM = 1


def subject_seed(seed: int, subject: str, kind: str = "") -> int:
    """The subject's own seed, determined by the cohort seed, the subject label and the cohort kind.

    The kind is part of it so that two cohorts given the same seed are still
    different people.
    """
    digest = hashlib.sha256(f"defacebench-simulate:{kind}:{seed}:{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def merged_settings(settings: dict | None) -> tuple[float, dict]:
    """Voxel size and difficulty settings with defaults filled in; rejects unknown keys.

    (``head_realism`` is read by :func:`.realism.settings_of`.)
    """
    settings = dict(settings or {})
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown simulation settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    difficulty = dict(settings.get("difficulty") or {})
    unknown = set(difficulty) - set(DEFAULT_DIFFICULTY)
    if unknown:
        raise ValueError(f"unknown difficulty settings {sorted(unknown)}; known: {sorted(DEFAULT_DIFFICULTY)}")
    return float(settings.get("voxel_size", DEFAULTS["voxel_size"])), {**DEFAULT_DIFFICULTY, **difficulty}


@lru_cache(maxsize=1)
def _cached_anatomy(anatomy_dir: str, stamp: float) -> dict:
    model = load_anatomy(Path(anatomy_dir))
    affine = model["affine"]
    inside = np.argwhere(model["head_mask"] > 0.5)
    lo, hi = (affine[:3, :3] @ inside.min(0) + affine[:3, 3]), (affine[:3, :3] @ inside.max(0) + affine[:3, 3])
    brain = np.argwhere(model["icv"] > 0.5)
    model["brain_centre"] = affine[:3, :3] @ brain.mean(0) + affine[:3, 3]
    # the scanner box: centred on the head left-right and front-back, its top 8 mm above the head
    top = max(lo[2], hi[2])
    model["fov_centre"] = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, top + 8 - deform.FIELD_OF_VIEW_MM[2] / 2])
    # template voxels that can hold brain (with a voxel of margin): the brain maps are sampled only there
    model["brain_box"] = bounding_box(model["icv"] > 0, margin=1)
    model["skull_box"] = bounding_box(model["skull"] > 0, margin=1)
    # deep white matter where a glioblastoma may be centred
    model["tumour_sites"] = np.argwhere(
        (model["wm"] > 0.6) & (model["csf_distance"] > 10) & (model["ventricle_distance"] > 6)
    )
    return model


def anatomy_model(anatomy_dir: Path) -> dict:
    """The head-space model, cached in the process while its files are unchanged."""
    path = Path(anatomy_dir).resolve()
    return _cached_anatomy(str(path), (path / "anatomy.json").stat().st_mtime)


def atrophy_distances(atrophy: float) -> tuple[float, float]:
    """Cortical-thinning and ventricle-enlargement distances (mm) of an atrophy level in [0, 1]."""
    thinning = CORTICAL_THINNING_MM[0] + atrophy * (CORTICAL_THINNING_MM[1] - CORTICAL_THINNING_MM[0])
    enlargement = VENTRICLE_ENLARGEMENT_MM[0] + atrophy * (VENTRICLE_ENLARGEMENT_MM[1] - VENTRICLE_ENLARGEMENT_MM[0])
    return thinning, enlargement


def tissue_labels(
    gm, wm, icv, ventricle_mm, csf_mm, head_mask, thinning_mm: float, enlargement_mm: float
) -> np.ndarray:
    """dseg labels: most probable of CSF/GM/WM inside the skull, then atrophy, then head tissue outside.

    Atrophy turns into CSF the brain tissue within ``enlargement_mm`` of the
    ventricles and the cortex within ``thinning_mm`` of the sulcal and
    extracerebral CSF.
    """
    labels = np.zeros(gm.shape, np.uint8)
    inside = icv > 0.5
    csf = icv - gm - wm
    tissue = np.where(wm >= np.maximum(gm, csf), WM, np.where(gm >= csf, GM, CSF)).astype(np.uint8)
    labels[inside] = tissue[inside]
    labels[inside & (ventricle_mm < enlargement_mm)] = CSF
    labels[(labels == GM) & (csf_mm < thinning_mm)] = CSF
    labels[(head_mask > 0.5) & ~inside] = HEAD
    return labels


def tissue_fractions(gm, wm, icv, labels) -> dict:
    """Partial-volume CSF/GM/WM fractions (summing to 1) inside the skull; atrophied tissue is pure CSF."""
    csf = np.clip(icv - gm - wm, 0, 1)
    total = np.maximum(csf + gm + wm, 1e-3)
    fractions = {"csf": csf / total, "gm": gm / total, "wm": wm / total}
    atrophied = (labels == CSF) & ((wm >= np.maximum(gm, csf)) | (gm >= csf))
    for name, value in (("csf", 1.0), ("gm", 0.0), ("wm", 0.0)):
        fractions[name][atrophied] = value
    return fractions


def reorient(data: np.ndarray, affine: np.ndarray, axcodes: str):
    """RAS-ordered ``data`` stored in ``axcodes`` voxel order (exact flips/permutations), with its affine."""
    transform = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(axcodes))
    )
    out = nib.orientations.apply_orientation(data, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    return np.ascontiguousarray(out), new_affine


def simulate_subject(
    kind: str, subject: str, seed: int, anatomy_dir: Path, bids_root: Path, settings: dict | None = None
) -> dict:
    """Simulate one subject of a ``kind`` cohort; write its BIDS images and ground truth; return the truth.

    Writes ``bids_root/sub-<subject>/anat`` (images + sidecars) and
    ``bids_root/derivatives/truth/sub-<subject>/anat`` (``dseg``, ``desc-face_mask``,
    ``desc-lesion_mask`` (ms), ``desc-tumour_dseg`` (glioma), ``truth.json``).
    ``settings``: ``voxel_size`` (mm) and ``difficulty`` (see :data:`DEFAULT_DIFFICULTY`).
    """
    if kind not in COHORT_KINDS:
        raise ValueError(f"unknown cohort kind {kind!r}; choose from {COHORT_KINDS}")
    voxel, difficulty = merged_settings(settings)
    head_realism = realism.settings_of((settings or {}).get("head_realism"))
    own_seed = subject_seed(seed, subject, kind)
    rng = np.random.default_rng(own_seed)
    model = anatomy_model(anatomy_dir)

    # -- pose, field of view, pathology site (needed before resampling for the mass effect)
    pose = deform.draw_pose(rng, model["brain_centre"], difficulty["max_pitch_deg"])
    chin_cut = bool(rng.random() < difficulty["chin_cut_probability"])
    fov_centre = pose.to_subject(model["fov_centre"][:, None])[:, 0]
    out_affine, shape = deform.field_of_view(rng, fov_centre, voxel, chin_cut)
    mass, tumour_centre, core_ml = None, None, None
    if kind == "glioma":
        core_ml = float(np.exp(rng.uniform(*np.log(TUMOUR_CORE_ML))))
        site = model["tumour_sites"][rng.integers(len(model["tumour_sites"]))].astype(float)
        site_world = model["affine"][:3, :3] @ site + model["affine"][:3, 3]
        tumour_centre = pose.to_subject(site_world[:, None])[:, 0]
        radius = (3 * core_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        mass = (tumour_centre, 1.5 * radius, float(rng.uniform(0.25, 0.45)))
    # each subject's own face (nose, chin, cheeks, brow, width) within PyDeface's face region
    face_shape = deform.draw_face_shape(np.random.default_rng([own_seed, FACE_SHAPE_STREAM]))
    coords = deform.template_coordinates(
        out_affine,
        shape,
        model["affine"],
        pose,
        rng,
        difficulty["warp_mm"],
        mass,
        face=(model["face_landmarks_mm"], face_shape, model["face_weight"]),
    )

    # -- resample the model once
    if head_realism is None:
        sampled = {name: deform.sample(model[name], coords) for name in ("head", "head_mask", "face")}
    else:
        # its own stream: every draw of the main generator is the same as without realism
        realism_rng = np.random.default_rng([own_seed, realism.REALISM_STREAM])
        realism_draw = realism.draw(realism_rng, head_realism)
        shape_field = (
            realism.head_shape_field(realism_rng, model, realism_draw["head_shape_mm"])
            if realism_draw["head_shape_mm"] > 0
            else None
        )
        head_coords = realism.head_coordinates(coords, model, realism_draw, shape_field)
        del shape_field
        sampled = {"face": deform.sample(model["face"], head_coords)}
        neck_head, neck_mask, pad = realism.extended_head(model, realism_draw["neck_mm"])
        head_coords[2] += pad  # the extended model's slice index
        sampled["head"] = deform.sample(neck_head, head_coords)
        sampled["head_mask"] = deform.sample(neck_mask, head_coords)
        del head_coords
    # brain maps: zero (probabilities) or irrelevant (distances, read only inside the skull) outside the brain box
    in_brain_box = deform.points_in_box(coords, model["brain_box"])
    for name in ("gm", "wm", "icv", "ventricle_distance", "csf_distance"):
        fill = MAX_DISTANCE_MM if name.endswith("_distance") else 0.0
        sampled[name] = deform.sample_in_box(model[name], coords, model["brain_box"], in_brain_box, fill)
    del in_brain_box
    in_skull_box = deform.points_in_box(coords, model["skull_box"])
    sampled["skull"] = deform.sample_in_box(model["skull"], coords, model["skull_box"], in_skull_box, 0.0)
    del in_skull_box
    del coords
    head_scale = float(np.cbrt(np.prod(pose.scale)))
    atrophy = float(rng.uniform(*ATROPHY_RANGE[kind]))
    labels = tissue_labels(
        sampled["gm"],
        sampled["wm"],
        sampled["icv"],
        sampled["ventricle_distance"] * head_scale,
        sampled["csf_distance"] * head_scale,
        sampled["head_mask"],
        *atrophy_distances(atrophy),
    )
    fractions = tissue_fractions(sampled["gm"], sampled["wm"], sampled["icv"], labels)
    face = (sampled["face"] > 0.5) & (labels == HEAD)
    head_t1 = sampled["head"] / np.float32(model["template_wm_intensity"])
    if head_realism is not None:
        head_t1 = realism.head_tissue_signal(
            head_t1, labels, (voxel,) * 3, realism_draw, realism.template_fat_level(model), realism_rng
        )
    bone = sampled["skull"]
    zooms = (voxel,) * 3

    lesion = tumour = mimic_maps = None
    ventricle_mm = sampled["ventricle_distance"] * head_scale
    if kind == "ms":
        lesion_target = float(np.exp(rng.uniform(*np.log(LESION_ML))))
        lesion = pathology.white_matter_lesions(labels, ventricle_mm, zooms, rng, lesion_target)
    elif kind == "glioma":
        centre_vox = np.linalg.inv(out_affine)[:3, :3] @ tumour_centre + np.linalg.inv(out_affine)[:3, 3]
        tumour = pathology.glioblastoma(labels, centre_vox, zooms, rng, core_ml)
    if kind in MIMIC_KINDS:
        mimic_maps = mimics.normal_mimics(labels, ventricle_mm, atrophy_distances(atrophy)[1], zooms, rng)
    del sampled, ventricle_mm

    # -- images
    bias = contrast.bias_field(shape, zooms, rng, difficulty["bias_level"])
    noise = difficulty["noise_level"] * float(rng.uniform(0.7, 1.4))
    images = {}
    for modality in SIMULATED_MODALITIES[kind]:
        signal = contrast.tissue_signal(modality, rng)
        clean = contrast.clean_image(
            modality, labels, fractions, head_t1, lesion, tumour, signal, rng, zooms, mimic_maps, bone
        )
        # each sequence sees the coil a little differently
        clean *= bias * contrast.bias_field(shape, zooms, rng, difficulty["bias_level"] / 3)
        if head_realism is not None:
            clean = realism.add_ghost(clean, labels, realism_draw["ghost_level"])
        data = contrast.rician(clean, noise * signal["wm"], rng)
        affine = out_affine
        if modality == "FLAIR" and rng.random() < difficulty["thick_slice_flair_probability"]:
            factor = max(2, int(round(rng.uniform(3, 5) / voxel)))
            data, affine = contrast.thick_slices(data, out_affine, factor, axis=2)
        images[modality] = (contrast.to_int16(data, rng.uniform(600, 1500) / signal["wm"]), affine)
    del bias, fractions, bone

    # -- truth (on the T1w grid, RAS-ordered before any reorientation: counts do not depend on it)
    voxel_ml = voxel**3 / 1000
    counts = np.bincount(labels.ravel(), minlength=5)
    truth = {
        "participant_id": f"sub-{subject}",
        "kind": kind,
        "seed": int(seed),
        "subject_seed": own_seed,
        "voxel_size_mm": voxel,
        "gm_ml": float(counts[GM] * voxel_ml),
        "wm_ml": float(counts[WM] * voxel_ml),
        "csf_ml": float(counts[CSF] * voxel_ml),
        "head_tissue_ml": float(counts[HEAD] * voxel_ml),
        "face_ml": float(face.sum() * voxel_ml),
        "atrophy": atrophy,
        "pitch_deg": pose.pitch_deg,
        "roll_deg": pose.roll_deg,
        "yaw_deg": pose.yaw_deg,
        "head_scale": head_scale,
        "chin_cut": chin_cut,
        "noise_level": noise,
        "face_shape": face_shape,
    }
    if head_realism is not None:
        truth["head_realism"] = realism_draw
    truth["brain_ml"] = truth["gm_ml"] + truth["wm_ml"]
    truth["icv_ml"] = truth["brain_ml"] + truth["csf_ml"]
    truth["vscaling"] = mni152_intracranial_ml() / truth["icv_ml"]
    truth["vscaling_pose"] = float(model["head_to_mni_det"] / abs(np.linalg.det(pose.linear)))
    truth["nbv_ml"] = truth["brain_ml"] * truth["vscaling"]
    if lesion is not None:
        truth["lesion_ml"] = float(lesion.sum() * voxel_ml)
    if tumour is not None:
        tumour_counts = np.bincount(tumour.ravel(), minlength=5)
        for name, label in (
            ("necrosis", pathology.NECROSIS),
            ("oedema", pathology.OEDEMA),
            ("nonenhancing", pathology.NONENHANCING),
            ("enhancing", pathology.ENHANCING),
        ):
            truth[f"{name}_ml"] = float(tumour_counts[label] * voxel_ml)
        truth["tumour_core_ml"] = truth["necrosis_ml"] + truth["nonenhancing_ml"] + truth["enhancing_ml"]
        truth["whole_tumour_ml"] = truth["tumour_core_ml"] + truth["oedema_ml"]
    flair = images.get("FLAIR")
    truth["flair_slice_mm"] = float(np.sqrt((flair[1][:3, 2] ** 2).sum())) if flair else None
    orientation = (
        ORIENTATIONS[rng.integers(len(ORIENTATIONS))] if rng.random() < difficulty["reorient_probability"] else "RAS"
    )
    truth["orientation"] = orientation

    # -- write
    bids_root = Path(bids_root)
    anat = bids_root / f"sub-{subject}" / "anat"
    for modality, (data, affine) in images.items():
        stored, stored_affine = reorient(data, affine, orientation)
        img = dataset.image(stored, stored_affine)
        dataset.write_image(
            img, anat / f"sub-{subject}_{MODALITY_FILENAME[modality]}", dataset.sidecar(img, modality, seed, own_seed)
        )
    derivatives = bids_root / "derivatives" / "truth" / f"sub-{subject}" / "anat"
    maps = {"dseg": labels, "desc-face_mask": face.astype(np.uint8)}
    if lesion is not None:
        maps["desc-lesion_mask"] = lesion.astype(np.uint8)
    if tumour is not None:
        maps["desc-tumour_dseg"] = tumour
    for name, data in maps.items():
        stored, stored_affine = reorient(data, out_affine, orientation)
        dataset.write_image(dataset.image(stored, stored_affine), derivatives / f"sub-{subject}_{name}.nii.gz")
    dataset.io.write_json(truth, derivatives / f"sub-{subject}_truth.json")
    return truth
