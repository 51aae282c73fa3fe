"""A corpus of bad input scans, one defect per subject, for the failure-is-data tests.

Every case is made at test time from a good T1w (a real scan or a small
synthetic head) and written into a BIDS tree in a temporary folder; nothing
here is stored in the repository. :data:`CASES` says, for each subject, what
the workflow must record: the stage of the failure and words its reason must
contain (for the defacing record and for the analysis of the full image).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class BadCase:
    """One defect: how to write it, and what the records must say about it.

    ``deface`` and ``analysis`` are (status, stage, words the message must
    contain) for the subject's defacing record and its NBV record of the full
    image; ``unit`` is what :func:`defacebench.io.validate_input_image` must
    raise for the subject's T1w (words of the reason), or None when the T1w
    is valid (the defect lies elsewhere).
    """

    write: callable
    deface: tuple
    analysis: tuple
    unit: tuple | None


def _t1w(anat: Path, subject: str, suffix: str = ".nii.gz") -> Path:
    anat.mkdir(parents=True, exist_ok=True)
    return anat / f"sub-{subject}_T1w{suffix}"


def _save(img: nib.Nifti1Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _with_data(source: nib.Nifti1Image, data: np.ndarray, dtype=None) -> nib.Nifti1Image:
    header = source.header.copy()
    if dtype is not None:
        header.set_data_dtype(dtype)
    return nib.Nifti1Image(data, source.affine, header)


def truncated(anat, subject, source):
    good = _save(source, _t1w(anat, subject))
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])  # a copy interrupted half way


def empty(anat, subject, source):
    _t1w(anat, subject).write_bytes(b"")


def not_nifti(anat, subject, source):
    # a text file that was named as an image (e.g. an export's error page)
    _t1w(anat, subject).write_bytes(b"<html><body>404 Not Found</body></html>\n")


def four_d(anat, subject, source):
    data = np.asanyarray(source.dataobj)
    _save(_with_data(source, np.stack([data] * 3, axis=-1)), _t1w(anat, subject))


def two_d(anat, subject, source):
    data = np.asanyarray(source.dataobj)
    _save(_with_data(source, data[:, :, data.shape[2] // 2]), _t1w(anat, subject))


def zero_affine(anat, subject, source):
    img = _with_data(source, np.asanyarray(source.dataobj))
    img.set_sform(np.zeros((4, 4)), code=1)
    img.set_qform(None, code=0)
    _save(img, _t1w(anat, subject))


def no_orientation(anat, subject, source):
    img = _with_data(source, np.asanyarray(source.dataobj))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    _save(img, _t1w(anat, subject))


def broken_link(anat, subject, source):
    os.symlink("../../removed/sub-x_T1w.nii.gz", _t1w(anat, subject))


def t2w_only(anat, subject, source):
    _save(source, anat / f"sub-{subject}_T2w.nii.gz")


def wrong_extension(anat, subject, source):
    # an image BIDS does not recognise as one (.nii.gz is the only compressed form it allows)
    gz = _save(source, _t1w(anat, subject))
    with gzip.open(gz, "rb") as fh:
        raw = fh.read()
    gz.unlink()
    _t1w(anat, subject, ".nii.zip").write_bytes(raw)


def nonfinite(anat, subject, source):
    data = np.asarray(source.get_fdata(), np.float32)
    centre = tuple(n // 2 for n in data.shape)
    data[centre[0] - 5 : centre[0] + 5, centre[1] - 5 : centre[1] + 5, centre[2] - 5 : centre[2] + 5] = np.nan
    data[0, 0, :3] = np.inf
    _save(_with_data(source, data, np.float32), _t1w(anat, subject))


def mismatched_grids(anat, subject, source):
    """A good T1w and a FLAIR whose affine places it a metre away: not in the T1w's scanner space."""
    _save(source, _t1w(anat, subject))
    moved = source.affine.copy()
    moved[0, 3] += 1000.0
    flair = nib.Nifti1Image(np.asanyarray(source.dataobj), moved, source.header.copy())
    _save(flair, anat / f"sub-{subject}_FLAIR.nii.gz")


INPUT = "input"
#: Subject label -> its defect. Analyses of the defaced images fail at "deface" (nothing to analyse).
CASES: dict[str, BadCase] = {
    "truncated": BadCase(truncated, ("failed", INPUT, "truncated"), ("failed", INPUT, "truncated"), ("truncated",)),
    "empty": BadCase(empty, ("failed", INPUT, "empty file"), ("failed", INPUT, "empty file"), ("empty file",)),
    "notnifti": BadCase(
        not_nifti, ("failed", INPUT, "not a NIfTI"), ("failed", INPUT, "not a NIfTI"), ("not a NIfTI",)
    ),
    "fourd": BadCase(four_d, ("failed", INPUT, "4D image"), ("failed", INPUT, "4D image"), ("4D image",)),
    "twod": BadCase(two_d, ("failed", INPUT, "2D image"), ("failed", INPUT, "2D image"), ("2D image",)),
    "zeroaffine": BadCase(
        zero_affine, ("failed", INPUT, "singular affine"), ("failed", INPUT, "singular affine"), ("singular affine",)
    ),
    "noorient": BadCase(
        no_orientation, ("failed", INPUT, "no orientation"), ("failed", INPUT, "no orientation"), ("no orientation",)
    ),
    "brokenlink": BadCase(
        broken_link,
        ("failed", INPUT, "symbolic link to a missing file"),
        ("failed", INPUT, "symbolic link to a missing file"),
        ("symbolic link to a missing file",),
    ),
    "t2wonly": BadCase(t2w_only, ("failed", INPUT, "no T1w image"), ("failed", INPUT, "no T1w image"), None),
    "wrongext": BadCase(
        wrong_extension, ("failed", INPUT, "sub-wrongext_T1w.nii.zip"), ("failed", INPUT, "no T1w image"), None
    ),
    # defacing needs no finite intensities (and must not count NaN != NaN as a change); the analysis does
    "nonfinite": BadCase(nonfinite, ("ok", "", ""), ("failed", INPUT, "NaN"), ("1000 NaN, 3 +Inf",)),
    # the T1w is fine (its analyses run); the FLAIR cannot be defaced with the T1w's masks
    "mismatch": BadCase(mismatched_grids, ("partial", INPUT, "field of view"), ("ok", "", ""), None),
}


def write_bids_corpus(
    root: Path, source: Path, controls: dict[str, Path], cases=None, sources: dict[str, Path] | None = None
) -> Path:
    """A BIDS dataset at ``root``: each case of :data:`CASES` made from ``source``, and the good ``controls``.

    ``controls`` maps a subject label to a T1w copied unchanged; ``sources``
    gives a case a T1w of its own instead of ``source``. Returns ``root``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bad inputs", "BIDSVersion": "1.8.0"}))
    for subject in cases or CASES:
        img = nib.load(str((sources or {}).get(subject, source)))
        CASES[subject].write(root / f"sub-{subject}" / "anat", subject, img)
    for subject, path in controls.items():
        anat = root / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, anat / f"sub-{subject}_T1w.nii.gz")
    return root


def corpus_digest(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` -> its bytes (a link -> its target), to check that a run left inputs untouched."""
    out: dict[str, bytes | str] = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
    return out
