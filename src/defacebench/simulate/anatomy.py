"""The head-space tissue model every simulated subject is drawn from (computed once)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .. import io
from ..templates import mni152, pydeface_head

#: Tissue labels of the ground-truth segmentation.
BACKGROUND, CSF, GM, WM, HEAD = 0, 1, 2, 3, 4


def _ants(img: nib.Nifti1Image):
    import ants

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "img.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), path)
        return ants.image_read(path)


def prepare_anatomy(out_dir: Path, threads: int = 1) -> dict:
    """Register MNI152 tissue maps into PyDeface's head template and write the head-space model.

    Writes into ``out_dir``: ``head.nii.gz`` (template T1w intensities),
    ``gm.nii.gz``, ``wm.nii.gz``, ``icv.nii.gz`` (probabilities x 255 on the head
    grid), ``anatomy.json`` (the MNI-to-head affine and its volume scaling).
    Deterministic for a given set of installed templates.
    """
    import ants

    from ..brain import extract_brain

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = nib.load(str(pydeface_head()))
    head_data = np.asarray(head.dataobj, np.float32)
    brain = extract_brain(head)
    fixed = _ants(nib.Nifti1Image(head_data * brain, head.affine))
    moving = ants.image_read(str(mni152("t1")))
    fixed2 = ants.resample_image(fixed, (2, 2, 2), use_voxels=False, interp_type=0)
    moving2 = ants.resample_image(moving, (2, 2, 2), use_voxels=False, interp_type=0)
    # antspyx seeds its random metric sampling only through ants.config._random_seed (deterministic model)
    previous_seed, ants.config._random_seed = ants.config._random_seed, 1
    try:
        reg = ants.registration(fixed=fixed2, moving=moving2, type_of_transform="Affine",
                                aff_iterations=(200, 100, 50), aff_shrink_factors=(4, 2, 1),
                                aff_smoothing_sigmas=(2, 1, 0), aff_random_sampling_rate=0.25)
    finally:
        ants.config._random_seed = previous_seed
    transform = ants.read_transform(reg["fwdtransforms"][0])
    linear = np.asarray(transform.parameters[:9]).reshape(3, 3)
    maps = {}
    for kind in ("gm", "wm", "t1"):
        warped = ants.apply_transforms(fixed=fixed, moving=ants.image_read(str(mni152(kind))),
                                       transformlist=reg["fwdtransforms"], interpolator="linear")
        maps[kind] = warped.numpy()
    for path in reg["fwdtransforms"] + reg["invtransforms"]:
        if os.path.exists(path):
            os.unlink(path)
    gm = np.clip(maps["gm"] / 255.0, 0, 1)
    wm = np.clip(maps["wm"] / 255.0, 0, 1)
    icv = ndimage.binary_fill_holes(maps["t1"] > 5) & ndimage.binary_dilation(brain, iterations=3)
    icv = ndimage.binary_opening(icv, iterations=1)
    gm, wm = gm * icv, wm * icv
    for name, arr in (("gm", gm), ("wm", wm), ("icv", icv.astype(np.float32))):
        io.save_image(nib.Nifti1Image(np.round(arr * 255).astype(np.uint8), head.affine), out_dir / f"{name}.nii.gz")
    io.save_image(nib.Nifti1Image(head_data.astype(np.int16), head.affine), out_dir / "head.nii.gz")
    # ANTs' forward transform maps head points to MNI points; |det| of its linear part is the volume
    # scaling head -> MNI (SIENAX's VSCALING of the template head), whatever the LPS/RAS frame
    info = {"head_to_mni_det": float(abs(np.linalg.det(linear))),
            "head_template": "pydeface mean_reg2mean.nii.gz", "tissue": "nilearn MNI152 2009 GM/WM",
            "registration": "antspyx affine at 2 mm (MNI T1 brain -> deepbet-masked head)"}
    io.write_json(info, out_dir / "anatomy.json")
    return {"dir": str(out_dir), **info}


def load_anatomy(anatomy_dir: Path) -> dict:
    """The head-space model written by :func:`prepare_anatomy`, as float arrays with the head affine."""
    anatomy_dir = Path(anatomy_dir)
    head = nib.load(str(anatomy_dir / "head.nii.gz"))
    out = {"affine": head.affine, "head": np.asarray(head.dataobj, np.float32)}
    for name in ("gm", "wm", "icv"):
        out[name] = np.asarray(nib.load(str(anatomy_dir / f"{name}.nii.gz")).dataobj, np.float32) / 255.0
    out.update(json.loads((anatomy_dir / "anatomy.json").read_text()))
    return out
