"""The head-space tissue model every simulated subject is drawn from (computed once).

The head, face, skull and scalp are PyDeface's ``mean_reg2mean`` template (an
average of registered T1w heads, shipped in the pydeface wheel). Brain tissue
is nilearn's MNI152 2009 GM/WM probability maps (Fonov et al. 2011,
NeuroImage 54:313) brought into that head by an affine registration of the
MNI152 T1w brain to the deepbet-extracted template brain (antspyx; Avants et
al. 2011, NeuroImage 54:2033). Intracranial CSF is the registered MNI152 brain
region (nilearn ``t1 > 0``) minus GM and WM.

The skull: the mean head is too blurred to show one (its intensity between the
intracranial region and the scalp is a flat 0.40-0.43 x WM, like CSF), whereas
real T1w heads show the cortical bone as a dark band, 0.11-0.15 x WM, 1-4 mm
outside deepbet's brain outline (measured on the real sample heads sub-IXI012,
sub-IXI013 and sub-otsu). :func:`skull_bone` marks that band in the head model
so that every simulated image shows a dark skull (:data:`.contrast.BONE_SIGNAL`).

Besides the maps, :func:`prepare_anatomy` stores two distance maps that let
each subject get its own atrophy cheaply (no per-subject morphology on the
full grid): the distance from the ventricles (ventricle enlargement) and the
distance from the extracerebral and sulcal CSF (cortical thinning), both in
millimetres of the head template.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import io
from ..templates import mni152, mni152_intracranial_ml, pydeface_facemask, pydeface_head
from .model_version import MODEL_VERSION

#: Tissue labels of the ground-truth segmentation (``dseg``).
BACKGROUND, CSF, GM, WM, HEAD = 0, 1, 2, 3, 4

#: Probability maps are stored as uint8 (0..255); distances as int16 in 0.1 mm.
PROBABILITY_SCALE = 255.0
DISTANCE_SCALE = 10.0
MAX_DISTANCE_MM = 40.0

#: Cortical bone of the simulated skull: head-model voxels outside the intracranial region, at most
#: ``SKULL_MAX_MM`` from it, whose template intensity is below ``BONE_TEMPLATE_MAX`` x WM. Over the
#: vault the mean head's scalp starts 5-6 mm outside the intracranial region (its intensity rises
#: from 0.4 to 0.8-1.0 x WM); brighter voxels nearer in (fatty marrow, sinus) stay as they are.
SKULL_MAX_MM = 6.0
BONE_TEMPLATE_MAX = 0.55

#: Files of the model, with what each holds.
MODEL_FILES = {
    "head": "head.nii.gz",  # template T1w intensities (int16), the non-brain tissue of every subject
    "head_mask": "head_mask.nii.gz",  # 1 inside the head (tissue, skull, sinuses), uint8
    "face": "face.nii.gz",  # 1 in PyDeface's face region (facemask == 0) inside the head, uint8
    "gm": "gm.nii.gz",  # GM probability x 255, uint8
    "wm": "wm.nii.gz",  # WM probability x 255, uint8
    "icv": "icv.nii.gz",  # intracranial (MNI152 brain region) probability x 255, uint8
    "ventricle_distance": "ventricle_distance.nii.gz",  # mm x 10 from the lateral ventricles, int16
    "csf_distance": "csf_distance.nii.gz",  # mm x 10 from non-ventricular CSF, int16
    "skull": "skull.nii.gz",  # 1 in the skull's cortical bone (:func:`skull_bone`), uint8
    "face_weight": "face_weight.nii.gz",  # where the face shape may deform (:func:`face_weight`) x 255, uint8
}

#: The face shape deforms nothing within ``FACE_BRAIN_MARGIN_MM[0]`` of the intracranial region and
#: fully beyond ``FACE_BRAIN_MARGIN_MM[1]`` (linear in between), inside PyDeface's face region.
FACE_BRAIN_MARGIN_MM = (10.0, 20.0)


def _to_ants(data: np.ndarray, affine: np.ndarray):
    """An ANTsImage with the same world geometry (ANTs reads NIfTI through ITK, so go through a file)."""
    from ..antslib import import_ants

    ants = import_ants()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "img.nii.gz")
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
        return ants.image_read(path)


def register_mni_to_head(head: nib.Nifti1Image, brain: np.ndarray) -> dict:
    """Affine registration of the MNI152 T1w brain to the template head's brain, and the warped maps.

    Runs at 2 mm on ONE thread with ANTs' random seed fixed (``ANTS_RANDOM_SEED``):
    measured here, two threads or an unset seed give a head-to-MNI scaling that
    moves by up to 2 % from run to run, which would break byte-identical
    cohorts. About 20 s. The maps (``t1``, ``gm``, ``wm``) are then warped at
    the head's 1 mm grid.

    The registration runs in a fresh Python process: ITK fixes its thread count at its first use
    in a process (from ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``), so after any two-threaded ITK
    filter in the caller's process it would not be single-threaded (measured: head-to-MNI scaling
    1.4151 instead of 1.4142, and a simulated test cohort that changed with the order of the tests).
    Returns the warped maps (float arrays on ``head``'s grid) and
    ``head_to_mni_det``, the volume scaling from head space to MNI space.
    """
    with tempfile.TemporaryDirectory(prefix="defacebench-anatomy-") as tmp:
        request, answer = Path(tmp) / "request.npz", Path(tmp) / "answer.npz"
        np.savez(request, head=np.asarray(head.dataobj, np.float32), affine=head.affine, brain=np.asarray(brain, bool))
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from defacebench.simulate.anatomy import "
                "_register_in_this_process as r; r(sys.argv[1], sys.argv[2])",
                str(request),
                str(answer),
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"head model registration failed: {run.stderr.strip()[-2000:]}")
        with np.load(answer) as result:
            return {
                "maps": {kind: result[kind] for kind in ("t1", "gm", "wm")},
                "head_to_mni_det": float(result["head_to_mni_det"]),
            }


def _register_in_this_process(request: str, answer: str) -> None:
    """:func:`register_mni_to_head`'s work, in a process whose first ITK use this is (threads and seed set before it)."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    os.environ["ANTS_RANDOM_SEED"] = "1"
    from ..antslib import import_ants

    ants = import_ants()

    with np.load(request) as given:
        head_data, affine, brain = given["head"], given["affine"], given["brain"]
    fixed = _to_ants(head_data * brain, affine)
    moving = ants.image_read(str(mni152("t1")))
    reg = ants.registration(
        fixed=ants.resample_image(fixed, (2, 2, 2), use_voxels=False, interp_type=0),
        moving=ants.resample_image(moving, (2, 2, 2), use_voxels=False, interp_type=0),
        type_of_transform="Affine",
        aff_iterations=(100, 50, 20),
        aff_shrink_factors=(4, 2, 1),
        aff_smoothing_sigmas=(2, 1, 0),
        aff_random_sampling_rate=0.3,
        random_seed=1,
    )
    try:
        transform = ants.read_transform(reg["fwdtransforms"][0])
        linear = np.asarray(transform.parameters[:9]).reshape(3, 3)
        maps = {
            kind: ants.apply_transforms(
                fixed=fixed,
                moving=ants.image_read(str(mni152(kind))),
                transformlist=reg["fwdtransforms"],
                interpolator="linear",
            ).numpy()
            for kind in ("t1", "gm", "wm")
        }
    finally:
        for path in reg["fwdtransforms"] + reg["invtransforms"]:
            if os.path.exists(path):
                os.unlink(path)
    # ANTs' forward transform maps head points to MNI points, so |det| of its linear part is the
    # volume scaling head -> MNI (whatever the LPS/RAS sign convention)
    np.savez(answer, **maps, head_to_mni_det=float(abs(np.linalg.det(linear))))


def head_mask(head_data: np.ndarray) -> np.ndarray:
    """The head: template intensity above a low threshold, closed, holes (skull, sinuses) filled per axial slice."""
    level = np.percentile(head_data[head_data > 0], 99)
    mask = ndimage.binary_closing(head_data > 0.06 * level, iterations=3)
    mask = ndimage.binary_fill_holes(mask)
    for z in range(mask.shape[2]):
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def skull_bone(head_t1: np.ndarray, icv: np.ndarray, inside_head: np.ndarray, zooms) -> np.ndarray:
    """The skull's cortical bone in the head model (see :data:`SKULL_MAX_MM`, :data:`BONE_TEMPLATE_MAX`).

    ``head_t1`` is the template T1w relative to its white matter; ``icv`` the
    intracranial region. Cortical bone has almost no MR signal in any of the
    simulated sequences, which is what lets brain extraction and skull
    estimation find the inner table (Smith 2002, Hum Brain Mapp 17:143, BET's
    skull model: dark bone between the brain's CSF and the bright scalp).
    """
    depth = ndimage.distance_transform_edt(~icv, sampling=zooms)
    return inside_head & ~icv & (depth <= SKULL_MAX_MM) & (head_t1 < BONE_TEMPLATE_MAX)


def face_weight(face_zone: np.ndarray, icv: np.ndarray, zooms) -> np.ndarray:
    """Where (0-1) a simulated face shape may deform the head model: PyDeface's face region, away from the brain.

    ``face_zone`` is PyDeface's face region (``facemask == 0``, skin and the air in front of it,
    where a nose may grow), its edge softened over 4 mm; the weight falls to 0 towards the
    intracranial region (:data:`FACE_BRAIN_MARGIN_MM`), so no face shape moves brain, CSF or skull.
    """
    soft = ndimage.gaussian_filter(face_zone.astype(np.float32), 4.0 / np.asarray(zooms, float))
    depth = ndimage.distance_transform_edt(~icv, sampling=zooms)
    near, far = FACE_BRAIN_MARGIN_MM
    return np.clip(soft, 0, 1) * np.clip((depth - near) / (far - near), 0, 1).astype(np.float32)


def face_landmarks(head: np.ndarray, face: np.ndarray, affine: np.ndarray) -> dict:
    """Landmarks of the head model's face (world mm): nose tip, chin, brow, cheeks, the face's midline.

    The nose tip is the face region's most anterior point within 8 mm of the head's left-right
    middle (off the midline, the mean head's brow-and-eye ridge reaches further forward); the
    midline is its x. The chin, brow and cheeks are the most anterior head points at fixed offsets
    from the nose tip (adult proportions, Farkas 1994): 38 mm below it, 30 mm above it, and 40 mm
    to each side 5 mm above it.
    """

    def world(mask):
        ijk = np.argwhere(mask)
        return ijk @ affine[:3, :3].T + affine[:3, 3]

    face_points, head_points = world(face), world(head)
    middle = (head_points[:, 0].min() + head_points[:, 0].max()) / 2
    midline = face_points[np.abs(face_points[:, 0] - middle) < 8.0]
    nose = midline[np.argmax(midline[:, 1])]

    def front(x, z, half_width=3.0):
        near = head_points[(np.abs(head_points[:, 0] - x) < half_width) & (np.abs(head_points[:, 2] - z) < half_width)]
        return near[np.argmax(near[:, 1])].tolist()

    return {
        "nose_tip": nose.tolist(),
        "midline_x": float(nose[0]),
        "chin": front(nose[0], nose[2] - 38),
        "brow": front(nose[0], nose[2] + 30),
        "cheek_right": front(nose[0] + 40, nose[2] + 5),
        "cheek_left": front(nose[0] - 40, nose[2] + 5),
    }


def ventricles(csf: np.ndarray, icv: np.ndarray, zooms) -> np.ndarray:
    """Lateral (and third) ventricles: CSF deep inside the intracranial space, largest connected parts."""
    depth = ndimage.distance_transform_edt(icv, sampling=zooms)
    deep = (csf > 0.5) & (depth > 22)
    labels, n = ndimage.label(deep)
    if n == 0:
        return deep
    sizes = ndimage.sum(deep, labels, range(1, n + 1))
    keep = 1 + np.flatnonzero(sizes >= 0.05 * sizes.max())
    return np.isin(labels, keep)


def prepare_anatomy(out_dir: Path, threads: int = 1) -> dict:
    """Register MNI152 tissue maps into PyDeface's head template and write the head-space model.

    Writes :data:`MODEL_FILES` and ``anatomy.json`` (the head-to-MNI volume
    scaling, the template's WM intensity, provenance) into ``out_dir``.
    Deterministic for a given set of installed templates; about a minute on
    two cores. Returns the contents of ``anatomy.json`` plus ``dir``.
    """
    from ..brain import extract_brain

    # threads serve deepbet only: the registration runs single-threaded to be deterministic
    os.environ.setdefault("DEFACEBENCH_THREADS", str(threads))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = nib.load(str(pydeface_head()))
    head_data = np.asarray(head.dataobj, np.float32)
    zooms = head.header.get_zooms()[:3]
    brain = extract_brain(head)
    reg = register_mni_to_head(head, brain)
    maps = reg["maps"]
    # the MNI152 brain region (nilearn's t1 is skull-stripped), kept within the head's own skull
    icv = ndimage.binary_fill_holes(maps["t1"] > 5) & ndimage.binary_dilation(brain, iterations=3)
    icv = ndimage.binary_opening(icv, iterations=1)
    icv_p = ndimage.gaussian_filter(icv.astype(np.float32), 0.5)
    gm = np.clip(maps["gm"] / 255.0, 0, 1) * icv_p
    wm = np.clip(maps["wm"] / 255.0, 0, 1) * icv_p
    csf = np.clip(icv_p - gm - wm, 0, 1)
    vent = ventricles(csf, icv, zooms)
    outer_csf = (csf > 0.5) & ~ndimage.binary_dilation(vent, iterations=2)
    inside_head = head_mask(head_data) | icv
    face_zone = np.asarray(nib.load(str(pydeface_facemask())).dataobj) < 0.5
    face = face_zone & inside_head
    wm_level = float(np.median(head_data[(wm > 0.9) & brain]))
    skull = skull_bone(head_data / wm_level, icv, inside_head, zooms)

    def distance(region):
        d = ndimage.distance_transform_edt(~region, sampling=zooms)
        return np.round(np.minimum(d, MAX_DISTANCE_MM) * DISTANCE_SCALE).astype(np.int16)

    # the two distance maps are independent and scipy's transform releases the GIL: computed side
    # by side they take half the wall time while this job has the machine to itself
    with ThreadPoolExecutor(max_workers=2) as pool:
        ventricle_distance, csf_distance = pool.map(distance, (vent, outer_csf))
    arrays = {
        "head": np.round(head_data).astype(np.int16),
        "head_mask": inside_head.astype(np.uint8),
        "face": face.astype(np.uint8),
        "gm": np.round(gm * PROBABILITY_SCALE).astype(np.uint8),
        "wm": np.round(wm * PROBABILITY_SCALE).astype(np.uint8),
        "icv": np.round(icv_p * PROBABILITY_SCALE).astype(np.uint8),
        "ventricle_distance": ventricle_distance,
        "csf_distance": csf_distance,
        "skull": skull.astype(np.uint8),
        "face_weight": np.round(face_weight(face_zone, icv, zooms) * PROBABILITY_SCALE).astype(np.uint8),
    }
    for name, arr in arrays.items():
        img = nib.Nifti1Image(arr, head.affine)
        img.header.set_xyzt_units("mm", "sec")
        io.save_image(img, out_dir / MODEL_FILES[name])
    voxel_ml = float(np.prod(zooms)) / 1000
    info = {
        "model_version": MODEL_VERSION,
        "head_to_mni_det": reg["head_to_mni_det"],
        "template_wm_intensity": wm_level,
        "template_gm_ml": float(gm.sum() * voxel_ml),
        "template_wm_ml": float(wm.sum() * voxel_ml),
        "template_icv_ml": float(icv_p.sum() * voxel_ml),
        "template_ventricles_ml": float(vent.sum() * voxel_ml),
        "template_skull_ml": float(skull.sum() * voxel_ml),
        "mni152_icv_ml": mni152_intracranial_ml(),
        "face_landmarks_mm": face_landmarks(inside_head, face, head.affine),
        "head_template": "pydeface data/mean_reg2mean.nii.gz (+ data/facemask.nii.gz)",
        "tissue": "nilearn MNI152 2009 (mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a)",
        "registration": "antspyx Affine at 2 mm (Mattes MI, 30 % sampling, 1 thread, ANTS_RANDOM_SEED=1), MNI152 T1w brain -> deepbet-masked head template",
    }
    io.write_json(info, out_dir / "anatomy.json")
    return {"dir": str(out_dir), **info}


def is_current(anatomy_dir: Path) -> bool:
    """Whether ``anatomy_dir`` holds a complete model of this version (:data:`MODEL_VERSION`)."""
    info_file = Path(anatomy_dir) / "anatomy.json"
    if not info_file.exists():
        return False
    return json.loads(info_file.read_text()).get("model_version", 1) == MODEL_VERSION and all(
        (Path(anatomy_dir) / name).exists() for name in MODEL_FILES.values()
    )


def load_anatomy(anatomy_dir: Path) -> dict:
    """The model written by :func:`prepare_anatomy`: float32 arrays (probabilities 0..1, distances in mm) and the head affine."""
    anatomy_dir = Path(anatomy_dir)
    if not is_current(anatomy_dir):
        raise RuntimeError(
            f"the head model in {anatomy_dir} was written by another version of defacebench "
            f"(model version {MODEL_VERSION} needed): delete it and prepare it again"
        )
    head = nib.load(str(anatomy_dir / MODEL_FILES["head"]))
    out = {"affine": head.affine.copy(), "shape": head.shape[:3]}
    for name, filename in MODEL_FILES.items():
        data = np.asarray(nib.load(str(anatomy_dir / filename)).dataobj)
        if name in ("gm", "wm", "icv", "face_weight"):
            out[name] = data.astype(np.float32) / np.float32(PROBABILITY_SCALE)
        elif name.endswith("_distance"):
            out[name] = data.astype(np.float32) / np.float32(DISTANCE_SCALE)
        else:
            out[name] = data.astype(np.float32)
    out.update(json.loads((anatomy_dir / "anatomy.json").read_text()))
    return out
