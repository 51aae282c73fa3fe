"""BIDS files of a simulated cohort: images, sidecars, ground-truth derivatives, dataset-level files.

Everything is written byte-reproducibly: NIfTI files are gzip-compressed with
a zero modification time and no embedded file name (gzip's header would
otherwise record the time and the temporary name), JSON with sorted keys.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__, io

DESCRIPTIONS = {
    "healthy": "ADNI-like cohort: T1w; brain atrophy varies (true NBV about 1,300-1,650 ml)",
    "ms": "MAGNIMS-like multiple sclerosis cohort: T1w and FLAIR with periventricular and juxtacortical "
    "white-matter lesions (FLAIR-hyperintense, T1w-hypointense)",
    "glioma": "PICTURE-like glioblastoma cohort: T1w, T1w with gadolinium, T2w and FLAIR; necrotic core, "
    "enhancing rim, non-enhancing tumour and oedema",
}
GENERATED_BY = [
    {
        "Name": "defacebench.simulate",
        "Version": __version__,
        "Description": "simulated heads from PyDeface's template and nilearn's MNI152 2009 tissue maps",
    }
]
#: Gzip level of written images: 1, nibabel's own default. Measured on a 1 mm glioma subject (7 files):
#: level 6 spent 6.9 s compressing, about a quarter of the whole simulation.
COMPRESSLEVEL = 1


def save_nifti(img: nib.Nifti1Image, path: Path) -> Path:
    """Write ``img`` as ``.nii.gz`` atomically and deterministically (gzip mtime 0, no file name in the header)."""
    path = Path(path)
    img.header.set_xyzt_units("mm", "sec")
    payload = img.to_bytes()
    with io.atomic_path(path) as tmp:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESSLEVEL) as gz,
        ):
            gz.write(payload)
    return path


def image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI-1 image with sform and qform set to ``affine`` (scanner coordinates) and unit scaling."""
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_slope_inter(1.0, 0.0)
    return img


def sidecar(img: nib.Nifti1Image, modality: str, seed: int, subject_seed: int) -> dict:
    """BIDS sidecar of a simulated image (acquisition-like fields plus provenance)."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    meta = {
        "Modality": "MR",
        "MagneticFieldStrength": 3,
        "Manufacturer": "defacebench simulator",
        "SliceThickness": max(zooms),
        "VoxelSizeMm": zooms,
        "MRAcquisitionType": "2D" if max(zooms) > 1.5 * min(zooms) else "3D",
        "GeneratedBy": GENERATED_BY,
        "SimulationSeed": int(seed),
        "SimulationSubjectSeed": int(subject_seed),
    }
    if modality == "ceT1w":
        meta["ContrastBolusIngredient"] = "GADOLINIUM"
    return meta


def write_image(img: nib.Nifti1Image, path: Path, meta: dict | None = None) -> None:
    """An image and, when ``meta`` is given, its JSON sidecar beside it."""
    save_nifti(img, path)
    if meta is not None:
        io.write_json(meta, Path(str(path).replace(".nii.gz", ".json")))


def write_dataset_files(kind: str, bids_root: Path, truths: list[dict], name: str) -> None:
    """``dataset_description.json`` (raw and ``derivatives/truth``), ``participants.tsv`` with truth columns, README, contact sheet."""
    from .figure import contact_sheet

    bids_root = Path(bids_root)
    io.write_json(
        {
            "Name": f"defacebench simulated cohort {name} ({kind})",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "GeneratedBy": GENERATED_BY,
        },
        bids_root / "dataset_description.json",
    )
    io.write_json(
        {
            "Name": f"Ground truth of the simulated cohort {name}",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": GENERATED_BY,
            "SourceDatasets": [{"URL": "../../"}],
        },
        bids_root / "derivatives" / "truth" / "dataset_description.json",
    )
    table = pd.DataFrame([{k: v for k, v in t.items() if not isinstance(v, (list, dict))} for t in truths])
    table = table.sort_values("participant_id")
    first = ["participant_id", "kind"]
    table = table[first + [c for c in table.columns if c not in first]]
    io.write_text(
        table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.4f"), bids_root / "participants.tsv"
    )
    io.write_json(
        {column: {"Description": describe(column)} for column in table.columns if describe(column)},
        bids_root / "participants.json",
    )
    io.write_text(readme(kind, name), bids_root / "README")
    contact_sheet(bids_root, list(table["participant_id"]), bids_root / "contact_sheet.png")


COLUMN_DESCRIPTIONS = {
    "gm_ml": "true grey-matter volume (ml, subject space) = GM voxels of the dseg x voxel volume",
    "wm_ml": "true white-matter volume (ml, subject space), lesions and tumour-infiltrated WM included",
    "csf_ml": "true intracranial CSF volume (ml, subject space)",
    "brain_ml": "gm_ml + wm_ml",
    "icv_ml": "true intracranial volume (ml) = csf_ml + gm_ml + wm_ml",
    "vscaling": "true volume scaling subject -> MNI152 = MNI152 intracranial volume (1887 ml) / icv_ml",
    "vscaling_pose": "head_to_mni_det / det(pose): the former VSCALING truth, kept for comparison (ignores the warp)",
    "nbv_ml": "true normalised brain volume (SIENAX-style) = brain_ml x vscaling",
    "lesion_ml": "true white-matter lesion volume (ml)",
    "necrosis_ml": "necrotic core (ml)",
    "oedema_ml": "peritumoural oedema (ml)",
    "nonenhancing_ml": "non-enhancing tumour (ml)",
    "enhancing_ml": "enhancing tumour (ml)",
    "tumour_core_ml": "necrosis + enhancing + non-enhancing (ml)",
    "whole_tumour_ml": "tumour core + oedema (ml)",
    "atrophy": "atrophy level 0..1 (cortical thinning and ventricle enlargement)",
    "pitch_deg": "head pitch (degrees, nodding)",
    "chin_cut": "field of view ends above the chin",
    "orientation": "voxel axis orientation of the stored images",
}


def describe(column: str) -> str | None:
    return COLUMN_DESCRIPTIONS.get(column)


def readme(kind: str, name: str) -> str:
    return (
        f"Simulated cohort '{name}': {DESCRIPTIONS[kind]}.\n\n"
        "Heads (face, scalp) are PyDeface's mean_reg2mean template, with the skull's cortical bone drawn as a dark band "
        "outside the intracranial region (as in real T1w); brain tissue is nilearn's MNI152 2009 "
        "GM/WM maps registered into it once (antspyx affine). Each subject gets, from one seed, its own pose "
        "(pitch, roll, yaw, head size, position), field of view (chin sometimes cut off), smooth non-linear "
        "deformation, atrophy, pathology, tissue contrast, bias field, Rician noise and voxel size (thick-slice "
        "FLAIR in some subjects).\n\n"
        "Ground truth is in derivatives/truth (dseg: 0 background, 1 CSF, 2 GM, 3 WM, 4 non-brain head tissue; "
        "desc-lesion_mask; desc-tumour_dseg: 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing; desc-face_mask: "
        "PyDeface's face region in the subject; sub-*_truth.json) and as columns of participants.tsv. "
        "Volumes are label counts x voxel volume in ml, on the T1w grid. nbv_ml = (gm_ml + wm_ml) x vscaling, "
        "vscaling = MNI152 intracranial volume / icv_ml (the scaling a skull-constrained registration estimates). contact_sheet.png shows a sagittal and "
        "an axial slice of every image.\n"
    )
