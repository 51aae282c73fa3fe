"""Building a shareable BIDS dataset from one defacing method's outputs.

What reaches the share, and what does not:

- each cohort image whose defacing succeeded and passed the privacy checks,
  as the defacing step wrote it (identifying header fields already cleared,
  checked again here), with its sidecar stripped of identifying keys; the
  image's voxels are compared with the full image's, so an image that
  defacing left unchanged is never shared as "defaced";
- images whose defacing failed, or that are flagged (a face still detected,
  too much brain changed, voxels unchanged), are left out and listed, unless
  ``share.keep_flagged`` names the flag;
- every other file of the source (other images, which may show a face; files
  that may hold dates; derivatives; subjects outside the cohort) is left out
  and listed in the README, unless a ``share.copy`` pattern names it;
- ``dataset_description.json``, README, CHANGES and ``participants.tsv``
  (columns on ``share.participants_keep`` only) are written anew.

The dataset is built in a hidden sibling folder and renamed into place only
when complete (and, when the validator ran, free of errors), so a half-written
share never sits under its final name. The source dataset is only read.
"""

from __future__ import annotations

import csv
import datetime
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__, io
from .options import share_options
from .validator import ValidationResult, validate_if_wanted

#: Files of the source root the share writes anew (or copies, LICENSE), never as "other files".
DATASET_FILES = (
    "dataset_description.json",
    "README",
    "README.md",
    "README.rst",
    "README.txt",
    "CHANGES",
    "participants.tsv",
    "participants.json",
    "LICENSE",
    ".bidsignore",
)

#: Source dataset_description.json keys carried over unchanged (DatasetDOI is the source's own:
#: it goes to SourceDatasets).
DESCRIPTION_KEYS = (
    "Name",
    "BIDSVersion",
    "DatasetType",
    "License",
    "Authors",
    "Acknowledgements",
    "HowToAcknowledge",
    "Funding",
    "EthicsApprovals",
    "ReferencesAndLinks",
)

#: File endings of images (MRI volumes, DICOM, pictures, video): any of them may show a face.
IMAGE_ENDINGS = (
    ".nii",
    ".nii.gz",
    ".mgz",
    ".mgh",
    ".mnc",
    ".mif",
    ".dcm",
    ".ima",
    ".img",
    ".hdr",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".gif",
    ".bmp",
    ".mp4",
    ".avi",
    ".mov",
    ".svg",
    ".pdf",
    ".gii",
    ".nrrd",
    ".mat",
    ".npy",
    ".npz",
    ".h5",
)

#: File endings read as text and relabelled when copied on request under ``share.relabel``.
TEXT_ENDINGS = (".json", ".tsv", ".txt", ".csv", ".bval", ".bvec", ".md", ".rst")

#: The report's status, and the validator's reason for not running, when every image was left out.
EMPTY_SHARE_STATUS = "empty: every image was left out, nothing to upload"
EMPTY_SHARE_REASON = "no image shared: a folder without subjects is not a BIDS dataset, so it was not validated"

#: Random subject labels: BIDS labels are alphanumeric; 8 of 36 characters make collisions negligible.
LABEL_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LABEL_LENGTH = 8


class ShareError(RuntimeError):
    """A share that cannot be built as asked (a path inside the source, validator errors, ...)."""


@dataclass
class ShareOutcome:
    """Where things went; ``report`` is also written to ``report_path``."""

    out_dir: Path
    report: dict
    validation: ValidationResult
    labels: dict = field(default_factory=dict)


# --- small helpers --------------------------------------------------------------------------------------


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_ENDINGS)


def voxel_digest(img: nib.spatialimages.SpatialImage) -> str:
    """A digest of an image's voxel values and grid shape, independent of its header text and storage type.

    Values are compared as float64 (after scaling), so a copy stored as another
    integer type or with header fields cleared still matches the full image.
    """
    data = np.ascontiguousarray(np.asanyarray(img.dataobj), dtype=np.float64)
    digest = hashlib.blake2b(repr(data.shape).encode(), digest_size=16)
    digest.update(data.data)
    return digest.hexdigest()


def _label_pattern(label: str) -> re.Pattern:
    # sub-01 must not match inside sub-011
    return re.compile(rf"sub-{re.escape(label)}(?=[_/.\s\"']|$)")


def random_labels(subjects: list[str]) -> dict[str, str]:
    """Subject -> a new random label, distinct from every other new and every original label.

    Drawn with :mod:`secrets`: the labels carry nothing of the original
    labels or of their order, and cannot be recomputed from a seed.
    """
    taken = set(subjects)
    labels: dict[str, str] = {}
    for subject in subjects:
        while True:
            label = "".join(secrets.choice(LABEL_ALPHABET) for _ in range(LABEL_LENGTH))
            if label not in taken:
                taken.add(label)
                labels[subject] = label
                break
    return labels


def _is_inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def _save_scrubbed(img: nib.Nifti1Image, dest: Path) -> None:
    """Save a copy of ``img`` (same voxels, grid and storage type) with its identifying header text cleared."""
    io.save_image(io.scrub_header(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header.copy())), dest)


def _sidecar_name(image_name: str) -> str:
    return image_name.removesuffix(".gz").removesuffix(".nii") + ".json"


# --- the build ------------------------------------------------------------------------------------------


class _Share:
    """One build: decisions per image and per file, then the dataset files, in a temporary folder."""

    def __init__(self, source_root: Path, tmp: Path, labels: dict[str, str], opts: dict, method: str):
        self.source_root = source_root
        self.tmp = tmp
        self.labels = labels
        self.opts = opts
        self.method = method
        self.shared: list[dict] = []  # {"path", "subject"}: images reaching the share
        self.left_out: list[dict] = []  # {"path", "reason"}: share-relative (relabelled) or source paths
        self.copied: list[str] = []  # other files copied on request (share paths)
        self.kept_flagged: list[dict] = []  # images shared despite a flag, with the flags
        self.backends: list[dict] = []  # distinct {backend, parameters, version} of the shared images
        self.unmeasured: list[str] = []  # images whose privacy checks had no measure
        self.consumed: set[Path] = set()  # source files decided by the image step

    # paths and messages in the share's own labels, without the user's folders
    def rename(self, text: str) -> str:
        for subject, label in self.labels.items():
            if subject != label:
                text = _label_pattern(subject).sub(f"sub-{label}", text)
        return text

    def clean_message(self, message: str) -> str:
        return self.rename(str(message).replace(str(self.source_root), "<source>"))

    def leave_out(self, path: str, reason: str) -> None:
        self.left_out.append({"path": path, "reason": reason})

    # -- defaced images ----------------------------------------------------------------------------------
    def add_subject(self, subject: str, images: dict, defaced_dir: Path | None, record: dict | None) -> None:
        for modality in sorted(images):
            # absolute, not resolved: a DataLad dataset's files are symlinks into its annex
            source = Path(os.path.abspath(images[modality]))
            self.consumed.add(source)
            self.consumed.add(source.with_name(_sidecar_name(source.name)))
            rel = self.rename(source.relative_to(self.source_root).as_posix())
            entry = (record or {}).get("images", {}).get(modality)
            if record is None:
                self.leave_out(rel, "no defacing record")
                continue
            if entry is None:
                why = record.get("message") or "not defaced"
                self.leave_out(
                    rel, f"defacing failed ({record.get('failed_stage') or 'deface'}: {self.clean_message(why)})"
                )
                continue
            if entry.get("status") not in ("ok", "no_face"):  # no_face: a scan without a face, written unchanged
                self.leave_out(
                    rel,
                    f"defacing failed ({entry.get('failed_stage', '?')}: "
                    f"{self.clean_message(entry.get('message', ''))})",
                )
                continue
            defaced = Path(defaced_dir) / "anat" / source.name if defaced_dir is not None else None
            if defaced is None or not defaced.exists():
                self.leave_out(rel, "the defacing record says ok but the defaced image is missing")
                continue
            flags, unmeasured = self.image_flags(entry, source, defaced)
            blocking = [f for f in flags if f not in self.opts["keep_flagged"]]
            if blocking:
                self.leave_out(rel, "privacy check failed: " + "; ".join(flags[f] for f in blocking))
                continue
            if flags:
                self.kept_flagged.append({"path": rel, "flags": sorted(flags)})
            self.copy_defaced(defaced, self.tmp / rel)
            self.write_sidecar(
                defaced.with_name(_sidecar_name(defaced.name)),
                source.with_name(_sidecar_name(source.name)),
                self.tmp / _sidecar_name(rel),
            )
            self.shared.append({"path": rel, "subject": subject})
            self.unmeasured += [f"{rel}: {note}" for note in unmeasured]
            ran = {
                "backend": entry.get("backend") or record.get("backend") or "unknown",
                "parameters": entry.get("parameters", {}),
                "version": (record.get("tool_versions") or {}).get(self.method),
            }
            if ran not in self.backends:
                self.backends.append(ran)

    def image_flags(self, entry: dict, source: Path, defaced: Path) -> tuple[dict[str, str], list[str]]:
        """Flag -> why, for the privacy checks an image fails (see :data:`options.FLAGS`), and the checks not made."""
        flags, unmeasured = {}, []
        if entry.get("face_detected_defaced") is True:
            flags["face_detected"] = "a face is still detected on the render of the defaced head"
        elif entry.get("face_detected_defaced") is None:
            unmeasured.append("face detection did not run (deface.render false, or the render failed)")
        fraction = entry.get("brain_voxels_changed_fraction")
        if isinstance(fraction, (int, float)) and np.isfinite(fraction):
            if fraction > self.opts["max_brain_changed_fraction"]:
                flags["brain_changed"] = (
                    f"defacing changed {fraction:.2%} of the brain's voxels "
                    f"(share.max_brain_changed_fraction {self.opts['max_brain_changed_fraction']:.2%})"
                )
        else:
            unmeasured.append("brain change not measured (no brain mask)")
        if voxel_digest(nib.load(str(defaced))) == voxel_digest(nib.load(str(source))):
            if entry.get("status") == "no_face":  # the defacing step found no face (defacebench.deface.face)
                why = self.clean_message(entry.get("message") or "no face found")
                # the face check's own message may already say so: "no face to remove (skull-stripped ...): ..."
                why = why if why.startswith("no face to remove") else f"no face to remove ({why})"
                flags["unchanged"] = f"{why}: not defaced, its voxels are the full image's"
            else:
                flags["unchanged"] = "the defaced image's voxels equal the full image's (defacing changed nothing)"
        return flags, unmeasured

    @staticmethod
    def copy_defaced(defaced: Path, dest: Path) -> None:
        """Copy a defaced image; rewrite it with its identifying header fields cleared if any are set."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        img = nib.load(str(defaced))
        header = img.header
        dirty = any(
            np.asarray(header[f]).tobytes().strip(b"\x00 ") for f in io.IDENTIFYING_HEADER_FIELDS if f in header
        ) or bool(getattr(header, "extensions", None))
        if dirty:
            _save_scrubbed(img, dest)
        else:
            shutil.copyfile(defaced, dest)

    def write_sidecar(self, defaced_sidecar: Path, source_sidecar: Path, dest: Path) -> None:
        """The defacing step's sidecar (else the source's), without identifying keys."""
        for sidecar in (defaced_sidecar, source_sidecar):
            if sidecar.exists():
                self.copy_scrubbed_json(sidecar, dest)
                return

    def copy_scrubbed_json(self, source: Path, dest: Path) -> None:
        """A JSON file without identifying keys (when it is a mapping), in the share's labels."""
        meta = json.loads(source.read_text())
        meta = io.scrub_sidecar(meta) if isinstance(meta, dict) else meta
        io.write_text(self.rename(json.dumps(meta, indent=2, sort_keys=True)) + "\n", dest)

    # -- every other file of the source ------------------------------------------------------------------
    def add_other_files(self, cohort_subjects: set[str]) -> None:
        """Decide every source file the image step did not: left out with a reason, or copied on request."""
        outside_cohort, hidden_files = [], 0
        for folder, dirs, files in os.walk(self.source_root):
            folder = Path(folder)
            rel_folder = folder.relative_to(self.source_root)
            for d in sorted(dirs):
                rel = (rel_folder / d).as_posix()
                if d.startswith("."):
                    self.leave_out(rel + "/", "hidden folder (not part of BIDS)")
                elif rel_folder == Path(".") and d in ("derivatives", "sourcedata"):
                    self.leave_out(
                        rel + "/",
                        "derivatives of the full images are not shared"
                        if d == "derivatives"
                        else "source data (e.g. DICOM) hold the full images and their headers",
                    )
                elif rel_folder == Path(".") and d.startswith("sub-") and d[4:] not in cohort_subjects:
                    outside_cohort.append(rel)
                else:
                    continue
                dirs.remove(d)
            for name in sorted(files):
                path = folder / name
                rel = (rel_folder / name).as_posix()
                if path in self.consumed or (rel_folder == Path(".") and name in DATASET_FILES):
                    continue
                if name.startswith("."):
                    hidden_files += 1
                    continue
                if any(fnmatch.fnmatch(rel, pattern) for pattern in self.opts["copy"]):
                    dest = self.rename(rel)
                    self.copy_on_request(path, self.tmp / dest)
                    self.copied.append(dest)
                    continue
                self.leave_out(self.rename(rel), self.other_file_reason(name, rel_folder != Path(".")))
        if hidden_files:  # markers such as Snakemake's .snakemake_timestamp: counted, not named one by one
            self.leave_out(f".* ({hidden_files} hidden file(s))", "not part of BIDS")
        if self.opts["relabel"] and outside_cohort:
            # their labels would tell which labels of the source the relabelled subjects are not
            self.leave_out(f"sub-* ({len(outside_cohort)} folder(s))", "subjects not in the cohort")
        else:
            for rel in outside_cohort:
                self.leave_out(rel + "/", "subject not in the cohort")

    @staticmethod
    def other_file_reason(name: str, in_subject: bool) -> str:
        if is_image(name):
            return "image not defaced by this study (may show a face)"
        if name.endswith("_scans.tsv") or name.endswith("_sessions.tsv"):
            return "may hold acquisition dates and times"
        if name.endswith(".json") and in_subject:
            return "sidecar of an image that is not shared"
        return "not shared by default (share.copy can add it)"

    def copy_on_request(self, source: Path, dest: Path) -> None:
        """A ``share.copy`` file: sidecars without identifying keys, NIfTI headers cleared, text relabelled."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        name = source.name.lower()
        if name.endswith(".json"):
            self.copy_scrubbed_json(source, dest)
        elif name.endswith((".nii", ".nii.gz")):
            _save_scrubbed(nib.load(str(source)), dest)
        elif name.endswith(TEXT_ENDINGS):
            io.write_text(self.rename(source.read_text()), dest)
        else:
            shutil.copyfile(source, dest)


# --- dataset-level files --------------------------------------------------------------------------------


def _read_tsv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return list(reader.fieldnames or []), list(reader)


def write_participants(
    source_root: Path, dest: Path, shared_subjects: list[str], labels: dict[str, str], keep: list[str]
) -> dict:
    """participants.tsv (and .json) with the kept columns and the shared subjects only, in label order."""
    source = source_root / "participants.tsv"
    columns, rows = _read_tsv(source) if source.exists() else (["participant_id"], [])
    by_subject = {row.get("participant_id", "").removeprefix("sub-"): row for row in rows}
    kept = [c for c in keep if c in columns or c == "participant_id"]
    dropped = [c for c in columns if c not in kept]
    lines = ["\t".join(kept)]
    for subject in sorted(shared_subjects, key=lambda s: labels[s]):
        row = by_subject.get(subject, {})
        values = [f"sub-{labels[subject]}" if c == "participant_id" else (row.get(c) or "n/a") for c in kept]
        lines.append("\t".join(values))
    io.write_text("\n".join(lines) + "\n", dest / "participants.tsv")
    if (source_root / "participants.json").exists():
        described = json.loads((source_root / "participants.json").read_text())
        io.write_json({k: v for k, v in described.items() if k in kept}, dest / "participants.json")
    return {"kept": kept, "dropped": dropped, "not_in_source": [c for c in keep if c not in kept]}


def dataset_description(source: dict, method: str, backends: list[dict], source_url: str, cohort: str) -> dict:
    """The share's dataset_description.json: the source's descriptive keys, provenance in GeneratedBy."""
    desc = {k: source[k] for k in DESCRIPTION_KEYS if k in source}
    desc["Name"] = f"{source.get('Name', 'BIDS dataset')} (defaced: {method})"
    desc.setdefault("BIDSVersion", "1.9.0")
    desc.setdefault("DatasetType", "raw")
    ran = (
        "; ".join(sorted(f"{b['backend']}, parameters {json.dumps(b['parameters'], sort_keys=True)}" for b in backends))
        or "no image shared"
    )
    versions = sorted({str(b["version"]) for b in backends if b.get("version")})
    method_entry = {"Name": method, "Description": f"backend: {ran}"}
    if versions:
        method_entry["Version"] = ", ".join(versions)
    desc["GeneratedBy"] = [
        {
            "Name": "defacebench",
            "Version": __version__,
            "Description": f"cohort {cohort} defaced with {method}, checked (face detection on a surface render, "
            "brain voxels changed, voxels unchanged) and shared: identifying header fields, sidecar "
            "keys and participants columns removed; see README and CHANGES",
        },
        method_entry,
    ] + [g for g in source.get("GeneratedBy", []) if isinstance(g, dict) and g.get("Name")]
    origin = {"URL": source_url}
    if source.get("DatasetDOI"):
        origin["DOI"] = source["DatasetDOI"]
    desc["SourceDatasets"] = [origin]
    return desc


def _listing(entries: list[dict]) -> list[str]:
    return [f"- {e['path']}: {e['reason']}" for e in sorted(entries, key=lambda e: e["path"])] or ["- none"]


def readme_text(
    share: _Share, desc: dict, participants: dict, cohort: str, source_readme: str | None, relabelled: bool
) -> str:
    opts = share.opts
    lines = [
        f"# {desc['Name']}",
        "",
        f"This dataset holds the images of cohort '{cohort}' defaced with {share.method}, made with defacebench "
        f"{__version__} from the BIDS dataset '{desc['Name'].rsplit(' (defaced', 1)[0]}' "
        f"(SourceDatasets in dataset_description.json).",
    ]
    if not share.shared:
        lines += [
            "",
            "**Nothing to share.** Every image of the cohort was left out (the reasons are listed below), so this "
            "folder holds no subject and is not a BIDS dataset: do not upload it.",
        ]
    lines += [
        "",
        "## What was done",
        f"- Each image was defaced with {share.method} ({desc['GeneratedBy'][1]['Description']}).",
        "- Identifying NIfTI header text (descrip, aux_file, db_name, intent_name, extensions) was cleared and "
        "sidecar keys that name a person, a date, a site or a device were removed "
        f"({', '.join(sorted(io.IDENTIFYING_SIDECAR_KEYS)[:6])}, ... and every key starting with 'Patient').",
        f"- participants.tsv keeps the columns {', '.join(participants['kept'])}"
        + (f"; dropped: {', '.join(participants['dropped'])}." if participants["dropped"] else "."),
        "- An image was left out when its defacing failed, when a face was still detected on a frontal render of "
        f"the defaced head, when defacing changed more than {opts['max_brain_changed_fraction']:.2%} of the brain's "
        "voxels, or when its voxels equal the full image's (a scan with no face to remove, skull-stripped or "
        "defaced by its provider, is not defaced and is left out so)"
        + (f" (shared all the same for: {', '.join(opts['keep_flagged'])})." if opts["keep_flagged"] else "."),
        "- Every other file of the source that may show a face or identify a person (other images, sidecars of "
        "images not shared, scans/sessions tables, derivatives) was left out"
        + (", except the files copied on request listed below." if share.copied else "."),
    ]
    if relabelled:
        lines.append(
            "- Subjects were given new random labels; the key to the original labels is kept by the "
            "data owner and is not part of this dataset."
        )
    lines += ["", f"## Images shared ({len(share.shared)})"]
    # sorted by the share's paths: the build's order (source labels) would give relabelled subjects away
    lines += [f"- {path}" for path in sorted(s["path"] for s in share.shared)] or ["- none"]
    if share.kept_flagged:
        lines += ["", "## Images shared despite a failed privacy check (share.keep_flagged)"]
        lines += [
            f"- {e['path']}: {', '.join(e['flags'])}" for e in sorted(share.kept_flagged, key=lambda e: e["path"])
        ]
    if share.unmeasured:
        lines += ["", "## Privacy checks that could not be made"] + [f"- {u}" for u in sorted(share.unmeasured)]
    if share.copied:
        lines += ["", "## Files copied on request (share.copy; not defaced, may show a face)"]
        lines += [f"- {c}" for c in sorted(share.copied)]
    lines += ["", "## Files of the source dataset left out"] + _listing(share.left_out)
    if source_readme and not relabelled:
        lines += ["", "## README of the source dataset", "", source_readme.strip()]
    elif source_readme:
        lines += ["", "The source dataset's README is not included: it may name subjects by their original labels."]
    return "\n".join(lines) + "\n"


def changes_text(method: str, cohort: str, n_images: int, n_left_out: int, relabelled: bool) -> str:
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    lines = [
        f"1.0.0 {today}",
        f"  - Defaced with {method} (defacebench {__version__}): {n_images} image(s) of cohort {cohort}.",
        f"  - {n_left_out} file(s) or folder(s) of the source left out (listed in README).",
        "  - Identifying header fields, sidecar keys and participants columns removed.",
    ]
    if relabelled:
        lines.append("  - Subjects relabelled at random.")
    return "\n".join(lines) + "\n"


def _source_readme(source_root: Path) -> str | None:
    for name in ("README", "README.md", "README.rst", "README.txt"):
        if (source_root / name).is_file():
            return (source_root / name).read_text(errors="replace")
    return None


# --- the entry point ------------------------------------------------------------------------------------


def _load_record(record) -> dict | None:
    if record is None or isinstance(record, dict):
        return record
    return io.read_json(record) if Path(record).exists() else None


def _publish(tmp: Path, final: Path) -> None:
    """Put the finished folder under its final name; an older share is swapped out, then removed."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.rename(final, old / final.name)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)


def _write_key(path: Path, labels: dict[str, str], shared: set[str]) -> None:
    lines = ["participant_id\tsource_participant_id\tshared"]
    lines += [f"sub-{labels[s]}\tsub-{s}\t{'yes' if s in shared else 'no'}" for s in sorted(labels, key=labels.get)]
    # created 0600 (the data owner's alone) and renamed into place: never readable by others, never partial
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def build_share(
    *,
    source_root: str | Path,
    images: dict,
    defaced_dirs: dict,
    records: dict,
    method: str,
    out_dir: str | Path,
    options: dict | None = None,
    cohort: str = "cohort",
    key_path: str | Path | None = None,
    report_path: str | Path | None = None,
) -> ShareOutcome:
    """Build ``out_dir`` as a shareable BIDS dataset of ``method``'s defaced images of one cohort.

    ``images``: subject -> modality -> full image path inside ``source_root``
    (the cohort plan); ``defaced_dirs``: subject -> the defacing step's
    ``sub-<label>`` folder of ``method``; ``records``: subject -> its defacing
    record (path or dict). ``options`` is the config's ``share:`` block
    (:func:`defacebench.sharing.options.share_options`). With
    ``relabel``, ``key_path`` (outside ``out_dir``) receives the label key.
    The report (what was shared, left out, the validator's result) is
    returned and written to ``report_path``. Validator errors raise
    :class:`ShareError` after the report is written, and nothing is published.
    A cohort whose every image is left out gets a folder with its README
    (saying so) and no subject, status :data:`EMPTY_SHARE_STATUS`, and no
    validation (a dataset without subjects is not BIDS); the workflow's
    output exists and the other cohorts' shares go on.
    """
    opts = share_options(options, method)
    source_root, out_dir = Path(os.path.abspath(source_root)), Path(os.path.abspath(out_dir))
    if _is_inside(out_dir, source_root) or _is_inside(source_root, out_dir):
        raise ShareError(f"the share {out_dir} and the source dataset {source_root} overlap; the source is read-only")
    if opts["relabel"]:
        if key_path is None:
            raise ShareError("share.relabel is true but no key path was given")
        if _is_inside(Path(key_path).absolute(), out_dir):
            raise ShareError(f"the relabelling key {key_path} would lie inside the share {out_dir}")
    if report_path is not None and _is_inside(Path(report_path).absolute(), out_dir):
        raise ShareError(f"the share report {report_path} would lie inside the share {out_dir}")
    source_desc = io.read_json(source_root / "dataset_description.json")
    subjects = sorted(images)
    labels = random_labels(subjects) if opts["relabel"] else {s: s for s in subjects}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        share = _Share(source_root, tmp, labels, opts, method)
        for subject in subjects:
            defaced_dir = defaced_dirs.get(subject)
            share.add_subject(
                subject, images[subject], Path(defaced_dir) if defaced_dir else None, _load_record(records.get(subject))
            )
        share.add_other_files(set(subjects))
        shared_subjects = sorted({s["subject"] for s in share.shared})
        for subject in subjects:
            if subject not in shared_subjects:
                share.leave_out(f"sub-{labels[subject]}/", "every image of the subject was left out")
        participants = write_participants(source_root, tmp, shared_subjects, labels, opts["participants_keep"])
        desc = dataset_description(
            source_desc, method, share.backends, opts["source_url"] or source_root.as_uri(), cohort
        )
        io.write_json(desc, tmp / "dataset_description.json")
        io.write_text(
            readme_text(share, desc, participants, cohort, _source_readme(source_root), opts["relabel"]), tmp / "README"
        )
        io.write_text(
            changes_text(method, cohort, len(share.shared), len(share.left_out), opts["relabel"]), tmp / "CHANGES"
        )
        for name in ("LICENSE", ".bidsignore"):
            if (source_root / name).is_file():
                shutil.copyfile(source_root / name, tmp / name)
        check_share(tmp, labels if opts["relabel"] else {})
        if share.shared:
            validation = validate_if_wanted(tmp, opts["validate"])
            status = "published" if not validation.errors else "rejected: BIDS validator errors"
        else:
            # a folder without subjects is not BIDS (the validator's QUICK_VALIDATION_FAILED): it is written,
            # so the report and README say why, but it is not a dataset to upload
            validation = ValidationResult(False, reason=EMPTY_SHARE_REASON)
            status = EMPTY_SHARE_STATUS
        report = {
            "cohort": cohort,
            "method": method,
            "share": str(out_dir),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "status": status,
            "options": opts,
            "subjects_shared": len(shared_subjects),
            "images_shared": sorted(s["path"] for s in share.shared),
            "left_out": sorted(share.left_out, key=lambda e: e["path"]),
            "copied_on_request": sorted(share.copied),
            "kept_flagged": sorted(share.kept_flagged, key=lambda e: e["path"]),
            "checks_not_made": sorted(share.unmeasured),
            "participants": participants,
            "backends": share.backends,
            "relabel_key": str(key_path) if opts["relabel"] else None,
            "validation": validation.to_dict(),
        }
        if report_path is not None:
            io.write_json(report, report_path)
        if validation.errors:
            raise ShareError(
                f"the share of cohort {cohort} is not valid BIDS, so it was not published "
                f"({report_path or 'no report path'}):\n{validation.summary()}"
            )
        if opts["relabel"]:
            _write_key(Path(key_path), labels, set(shared_subjects))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the share is meant to be read by others
        _publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ShareOutcome(out_dir, report, validation, labels)


def check_share(share_dir: Path, relabelled: dict[str, str]) -> None:
    """Last checks on a built share: no identifying sidecar key anywhere, no original label in a file name.

    These restate what the build does, so a later change to it cannot leak
    silently; a failure raises :class:`ShareError`.
    """
    for path in share_dir.rglob("*.json"):
        meta = json.loads(path.read_text())
        if isinstance(meta, dict) and path.name != "dataset_description.json":
            bad = sorted(k for k in meta if k in io.IDENTIFYING_SIDECAR_KEYS or k.lower().startswith("patient"))
            if bad:
                raise ShareError(f"{path.relative_to(share_dir)} still holds identifying keys {bad}")
    for subject, label in relabelled.items():
        if subject != label:
            pattern = _label_pattern(subject)
            leaked = [p for p in share_dir.rglob("*") if pattern.search(p.relative_to(share_dir).as_posix())]
            if leaked:
                raise ShareError(f"original label sub-{subject} left in {leaked[0].relative_to(share_dir)}")


__all__ = ["ShareError", "ShareOutcome", "build_share", "random_labels", "voxel_digest"]
