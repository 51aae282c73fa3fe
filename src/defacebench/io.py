"""Image and sidecar input/output.

Every writer here is atomic (write to a temporary file in the destination
folder, then rename), so an output appears whole or not at all. Nothing here
ever writes next to an input file.
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import contextmanager
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from .records import AnalysisFailure

#: NIfTI header text fields that may carry identifying information.
IDENTIFYING_HEADER_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")

#: BIDS sidecar keys that identify a person, a date or a device (DICOM-derived).
IDENTIFYING_SIDECAR_KEYS = frozenset(
    {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientAge",
        "PatientWeight",
        "PatientSize",
        "PatientPosition_Identifying",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionDateTime",
        "SeriesDate",
        "SeriesTime",
        "StudyDate",
        "StudyTime",
        "ContentDate",
        "ContentTime",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "DateOfBirth",
        "BirthDate",
        "DeviceSerialNumber",
        "StationName",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "AccessionNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "StudyID",
        "ProcedureStepDescription",
        "PatientComments",
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


class BadInputImage(AnalysisFailure):
    """An input image that cannot be analysed or defaced: a study failure at stage ``input``.

    The reason names the file and its defect, in words a researcher can act on
    (re-export the scan, pick another run, fix the header).
    """

    def __init__(self, path: str | os.PathLike, defect: str):
        super().__init__("input", f"{Path(path).name}: {defect}")
        self.path = Path(path)
        self.defect = defect


#: NIfTI ``sizeof_hdr`` values: the first four bytes of a NIfTI-1 or NIfTI-2 file (either byte order).
_NIFTI_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}

#: Largest singular value ratio of an affine's linear part still taken as a usable voxel-to-world map.
_AFFINE_CONDITION_LIMIT = 1e6

#: Largest input image a job reads (MB of voxel data, decompressed), unless ``DEFACEBENCH_MAX_IMAGE_MB``
#: (set by the workflow from the config's ``max_image_mb``) says otherwise.
DEFAULT_MAX_IMAGE_MB = 4096

#: Obliquity (degrees) from which an analysis record warns (:func:`oblique_warning`).
OBLIQUE_WARNING_DEGREES = 1.0


def max_image_bytes() -> int:
    """The size limit of one input image in bytes: ``DEFACEBENCH_MAX_IMAGE_MB`` or :data:`DEFAULT_MAX_IMAGE_MB`."""
    return int(float(os.environ.get("DEFACEBENCH_MAX_IMAGE_MB", DEFAULT_MAX_IMAGE_MB)) * 1024 * 1024)


def _too_large(limit: int, size: int | None = None) -> str:
    """The reason of an image refused for its size: its size on disk, or (``size`` None) once decompressed."""

    def mb(n: int) -> str:
        return f"{n / 2**20:.0f} MB" if n >= 10 * 2**20 else f"{n / 2**20:.2g} MB"

    if size is None:
        return f"too large: more than the limit of {mb(limit)} of image data once decompressed (max_image_mb in the config)"
    return f"too large: {mb(size)} on disk, above the limit of {mb(limit)} of image data (max_image_mb in the config)"


def _gunzip(raw: bytes, limit: int) -> bytes:
    """The decompressed bytes of gzip data (every member), refusing to produce more than ``limit`` bytes.

    Raises ``EOFError`` when the data ends early, ``zlib.error`` when it is
    corrupt and ``OverflowError`` past the limit, so a
    small file that inflates to gigabytes is refused before it fills memory.
    """
    parts, total = [], 0
    while raw:
        stream = zlib.decompressobj(wbits=31)
        part = stream.decompress(raw, limit + 1 - total)
        parts.append(part)
        total += len(part)
        if total > limit:
            raise OverflowError(f"more than {limit} bytes")
        if not stream.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        raw = stream.unused_data.lstrip(b"\x00")  # another member, or the zero padding some writers add
    return b"".join(parts)


def validate_input_image(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> nib.Nifti1Image:
    """Read an input image once and check that it is a usable 3D NIfTI volume; return it.

    Every per-subject job reads its inputs through here, so that a bad scan
    becomes one :class:`BadInputImage` (stage ``input``, a reason naming the
    file and the defect) instead of a traceback somewhere downstream. Checked:
    the path (missing, a symbolic link to a missing file, a folder), the
    bytes (empty, truncated or corrupt gzip, not NIfTI-1/2 whatever the name
    says, fewer voxel bytes than the header declares), the shape (3D, or 4D
    with one volume, which is squeezed; 2D, 4D and single-slice images are
    refused), the orientation (no qform/sform, or a singular or non-finite
    affine) and, unless ``allow_nonfinite``, NaN or infinite voxel values
    (counted in the reason), and images larger than :func:`max_image_bytes`
    (on disk or once decompressed). Defacing accepts non-finite voxels (it only
    needs to know where the face is); analyses do not.

    The file is read and decompressed here, once; the returned image's voxels
    are read from memory (a nibabel array proxy over the decompressed bytes,
    keeping the stored type and scaling), so later reads cost no second
    decompression.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise BadInputImage(path, f"a symbolic link to a missing file ({os.readlink(path)})")
    if not path.exists():
        raise BadInputImage(path, "the file does not exist")
    if not path.is_file():
        raise BadInputImage(path, "not a file")
    limit = max_image_bytes()
    if path.stat().st_size > limit:
        raise BadInputImage(path, _too_large(limit, path.stat().st_size))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputImage(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not raw:
        raise BadInputImage(path, "an empty file (0 bytes)")
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the extension says
        try:
            raw = _gunzip(raw, limit)
        except EOFError as exc:
            raise BadInputImage(path, f"truncated gzip data (the file ends early: {exc})") from exc
        except OverflowError as exc:
            raise BadInputImage(path, _too_large(limit)) from exc
        except (OSError, zlib.error) as exc:
            raise BadInputImage(path, f"corrupt gzip data ({exc})") from exc
    img = _nifti_from_bytes(path, raw)
    return _checked_volume(path, img, allow_nonfinite)


def _nifti_from_bytes(path: Path, raw: bytes) -> nib.Nifti1Image:
    """A NIfTI-1 or -2 image over the (decompressed) bytes of a single file, or :class:`BadInputImage`."""
    sizes = {int.from_bytes(raw[:4], order) for order in ("little", "big")} if len(raw) >= 4 else set()
    [klass] = [_NIFTI_CLASSES[s] for s in sizes if s in _NIFTI_CLASSES] or [None]
    if klass is None:
        raise BadInputImage(
            path, f"not a NIfTI file (its first bytes are {raw[:8]!r}, not a NIfTI-1 or NIfTI-2 header)"
        )
    try:
        img = klass.from_bytes(raw)
    except (nib.spatialimages.HeaderDataError, nib.filebasedimages.ImageFileError, ValueError, EOFError) as exc:
        raise BadInputImage(path, f"an unreadable NIfTI header ({exc})") from exc
    header = img.header
    needed = int(header.get_data_offset()) + int(np.prod(img.shape, dtype=np.int64)) * header.get_data_dtype().itemsize
    if len(raw) < needed:
        raise BadInputImage(
            path, f"truncated: the header declares {needed} bytes of image, the file holds {len(raw)} (decompressed)"
        )
    return img


def _checked_volume(path: Path, img: nib.Nifti1Image, allow_nonfinite: bool) -> nib.Nifti1Image:
    """``img`` as a 3D volume with a usable affine (and finite voxels unless allowed), or :class:`BadInputImage`."""
    shape = img.shape
    while len(shape) > 3 and shape[-1] == 1:  # a 3D volume stored with trailing singleton dimensions
        img = img.slicer[..., 0]
        shape = img.shape
    if len(shape) < 3:
        raise BadInputImage(path, f"a {len(shape)}D image (shape {shape}); a 3D volume is needed")
    if len(shape) > 3:
        raise BadInputImage(
            path,
            f"a {len(shape)}D image (shape {shape}, {int(np.prod(shape[3:]))} volumes); "
            "a single 3D volume is needed (pick one volume or run)",
        )
    if min(shape) < 2:
        raise BadInputImage(path, f"a single slice (shape {shape}); a 3D volume is needed")
    header = img.header
    qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
    if qform_code == 0 and sform_code == 0:
        raise BadInputImage(
            path,
            "no orientation: qform_code and sform_code are both 0, so where the "
            "head (and its face) lies in space is unknown",
        )
    source = "sform" if sform_code > 0 else "qform"
    affine = img.affine
    linear = affine[:3, :3]
    if not np.isfinite(affine).all():
        raise BadInputImage(path, f"a non-finite affine ({source}): {_one_line(affine)}")
    singular_values = np.linalg.svd(linear, compute_uv=False)
    if singular_values[0] == 0 or singular_values[-1] * _AFFINE_CONDITION_LIMIT < singular_values[0]:
        raise BadInputImage(
            path,
            f"a singular affine ({source}, voxel sizes {np.round(singular_values, 6).tolist()} mm): "
            f"{_one_line(affine)}",
        )
    if not allow_nonfinite:
        counts = image_nonfinite_counts(img)
        if counts["nonfinite_voxels"]:
            raise BadInputImage(
                path,
                f"{describe_nonfinite(counts)} voxels out of {int(np.prod(shape))}; "
                "the analyses need finite intensities",
            )
    return img


def obliquity_degrees(affine: np.ndarray) -> float:
    """How far the voxel axes are rotated from the nearest world axes, in degrees (0 for a straight grid).

    The largest of nibabel's per-axis obliquities (the angle between each voxel
    axis and the world axis it is closest to).
    """
    return float(np.degrees(nib.affines.obliquity(np.asarray(affine, np.float64))).max())


def oblique_warning(modality: str, img: nib.spatialimages.SpatialImage, path: str | os.PathLike | None = None):
    """A record's warning when ``img``'s grid is oblique by :data:`OBLIQUE_WARNING_DEGREES` or more, else None.

    The analyses reorient by axis flips and permutations only, so an oblique
    head lies rotated in their grid. Their affine registrations start from a
    rotation search on grids turned by 10 degrees or more
    (:data:`defacebench.analysis.registration.ROTATION_SEARCH`),
    which brought the NBV of sub-IXI012 turned by 30 degrees from +8.7 % to
    -0.1 % of the straight grid's (classic pipeline +0.7 %); other steps work
    on the voxel grid, so the warning stays (issue #23).
    """
    degrees = obliquity_degrees(img.affine)
    if degrees < OBLIQUE_WARNING_DEGREES:
        return None
    name = f" ({Path(path).name})" if path is not None else ""
    return (
        f"{modality} is oblique by {degrees:.1f} degrees{name}: its voxel axes are rotated from the scanner's, "
        "and the result can differ from that of the same head on a straight grid "
        "(NBV of a copy turned by 30 degrees: -0.1 % modern, +0.7 % classic pipeline)"
    )


def _one_line(affine: np.ndarray) -> str:
    """An affine's three rows on one line (failure messages end up in one table cell)."""
    return str(np.round(np.asarray(affine, np.float64)[:3], 3).tolist())


def nonfinite_counts(data: np.ndarray) -> dict:
    """How many voxels hold NaN, +Inf and -Inf (all 0, without a pass over the data, for integer types)."""
    data = np.asanyarray(data)
    if not np.issubdtype(data.dtype, np.inexact):
        return {"nonfinite_voxels": 0, "nan_voxels": 0, "posinf_voxels": 0, "neginf_voxels": 0}
    nan = int(np.isnan(data).sum())
    posinf = int(np.isposinf(data).sum())
    neginf = int(np.isneginf(data).sum())
    return {
        "nonfinite_voxels": nan + posinf + neginf,
        "nan_voxels": nan,
        "posinf_voxels": posinf,
        "neginf_voxels": neginf,
    }


def image_nonfinite_counts(img: nib.spatialimages.SpatialImage) -> dict:
    """:func:`nonfinite_counts` of an image's voxels, without reading them when its stored type cannot hold any.

    Integers with a finite scale factor and offset are always finite; only
    float data (or non-finite scaling) is read and counted.
    """
    stored = img.get_data_dtype()
    scaling = [float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))]
    if np.issubdtype(stored, np.integer) and np.isfinite(scaling).all():
        return nonfinite_counts(np.zeros(0, stored))
    return nonfinite_counts(np.asanyarray(img.dataobj))


def describe_nonfinite(counts: dict) -> str:
    """'12 NaN, 3 +Inf' from :func:`nonfinite_counts`."""
    parts = [
        f"{counts[key]} {label}"
        for key, label in (("nan_voxels", "NaN"), ("posinf_voxels", "+Inf"), ("neginf_voxels", "-Inf"))
        if counts[key]
    ]
    return ", ".join(parts) or "no non-finite"


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
        k: v for k, v in sidecar.items() if k not in IDENTIFYING_SIDECAR_KEYS and not k.lower().startswith("patient")
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
