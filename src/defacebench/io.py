"""Image and sidecar input/output.

Every writer here is atomic (write to a temporary file in the destination
folder, then rename), so an output appears whole or not at all. Nothing here
ever writes next to an input file.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

#: NIfTI header text fields that may carry identifying information.
IDENTIFYING_HEADER_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")

#: BIDS sidecar keys that identify a person, a date or a device (DICOM-derived).
IDENTIFYING_SIDECAR_KEYS = frozenset(
    {
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
        "PatientWeight", "PatientSize", "PatientPosition_Identifying",
        "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "SeriesDate",
        "SeriesTime", "StudyDate", "StudyTime", "ContentDate", "ContentTime",
        "InstanceCreationDate", "InstanceCreationTime", "DateOfBirth", "BirthDate",
        "DeviceSerialNumber", "StationName", "InstitutionName", "InstitutionAddress",
        "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
        "OperatorsName", "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID",
        "StudyID", "ProcedureStepDescription", "PatientComments",
    }
)


def load_image(path: str | os.PathLike) -> nib.Nifti1Image:
    """Load a NIfTI image, squeezing a trailing singleton 4th dimension.

    Raises ``ValueError`` for images that are not 3D volumes, so the caller can
    record a clear failure instead of a confusing error further down.
    """
    img = nib.load(str(path))
    if img.ndim == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if img.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {img.shape}")
    return img


def voxel_volume_ml(img: nib.spatialimages.SpatialImage) -> float:
    """Volume of one voxel in millilitres (|det| of the affine's linear part / 1000)."""
    return float(abs(np.linalg.det(img.affine[:3, :3])) / 1000.0)


def to_canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Reorient (by axis flips and permutations only, no resampling) to RAS+."""
    return nib.as_closest_canonical(img)


def from_canonical(data: np.ndarray, reference: nib.Nifti1Image) -> np.ndarray:
    """Bring an array computed on ``to_canonical(reference)`` back to ``reference``'s voxel grid.

    The inverse of :func:`to_canonical` for data: an exact permutation/flip, no
    interpolation.
    """
    ornt_ref = nib.orientations.io_orientation(reference.affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    # canonical -> reference orientation
    transform = nib.orientations.ornt_transform(ras, ornt_ref)
    return nib.orientations.apply_orientation(data, transform)


def like(data: np.ndarray, reference: nib.Nifti1Image, dtype=None) -> nib.Nifti1Image:
    """A new image with ``reference``'s grid, affine and header, holding ``data``.

    The data type is ``reference``'s stored type unless ``dtype`` is given;
    values are rounded and clipped into an integer type's range so that a
    defaced image never wraps around.
    """
    header = reference.header.copy()
    dtype = np.dtype(dtype or reference.get_data_dtype())
    header.set_data_dtype(dtype)
    arr = np.asarray(data)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        slope = getattr(reference.dataobj, "slope", 1.0)
        inter = getattr(reference.dataobj, "inter", 0.0)
        if (slope, inter) != (1.0, 0.0):
            # the input stores scaled integers (scl_slope/scl_inter): keep the real values and let
            # nibabel choose the scaling when the image is written, as it did for the input
            img = nib.Nifti1Image(arr.astype(np.float64), reference.affine, header)
            img.header.set_data_dtype(dtype)
            return img
        arr = np.clip(np.rint(arr), info.min, info.max).astype(dtype)
        header.set_slope_inter(1.0, 0.0)
    elif dtype == np.bool_:
        arr = arr.astype(np.uint8)
        header.set_data_dtype(np.uint8)
    else:
        arr = arr.astype(dtype)
    img = nib.Nifti1Image(arr, reference.affine, header)
    img.set_qform(reference.affine, code=int(reference.header["qform_code"]) or 1)
    img.set_sform(reference.affine, code=int(reference.header["sform_code"]) or 1)
    return img


def mask_like(mask: np.ndarray, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """A uint8 mask image on ``reference``'s grid (affine copied exactly)."""
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    img = nib.Nifti1Image(np.asarray(mask).astype(np.uint8), reference.affine.copy(), header)
    return img


def scrub_header(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Clear identifying free-text header fields and drop header extensions."""
    header = img.header
    for field in IDENTIFYING_HEADER_FIELDS:
        header[field] = b""
    if hasattr(header, "extensions"):
        del header.extensions[:]
    return img


def scrub_sidecar(sidecar: dict) -> dict:
    """Return a copy of a BIDS sidecar without identifying keys (names, dates, devices, sites)."""
    return {
        k: v
        for k, v in sidecar.items()
        if k not in IDENTIFYING_SIDECAR_KEYS and not k.lower().startswith("patient")
    }


@contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary path beside ``path`` that replaces it when the block ends without an error.

    Readers (and Snakemake) see either the old file or the complete new one,
    never a partial write; on an error the temporary file is removed. The
    temporary name keeps ``path``'s suffixes, so writers that choose a format
    by extension (nibabel, matplotlib, OpenCV) still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_image(img: nib.Nifti1Image, path: str | os.PathLike) -> Path:
    """Write a NIfTI image atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON atomically (sorted keys, NaN written as null)."""
    return write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n", path)


def read_json(path: str | os.PathLike):
    with open(path) as fh:
        return json.load(fh)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return None if not np.isfinite(v) else v
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
