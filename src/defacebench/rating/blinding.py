"""Blinding for visual quality rating: random report identifiers, a per-rater order, and a key kept apart.

Provins et al. (2025), PLoS Biol 23:e3003149, showed raters MRIQC reports (Esteban et al. 2017)
of nondefaced and defaced images under random identifiers, in a shuffled order, and un-blinded
the ratings afterwards with a key the raters never saw. :func:`build_reports` does the same for
a study's image variants:

- each variant gets an identifier drawn from the operating system's random source
  (:func:`secrets.token_hex`), so no identifier can be derived from a subject, a variant or the
  study's settings;
- the reports are written to the *reports folder* as ``<id>_<view>.png``, in a random order
  (file times say nothing about the variant), with a ``manifest.json`` listing identifiers and
  views only;
- the *key* (identifier -> subject, variant, defaced, image) is written to a separate file that
  must lie outside the reports folder; the rating server is never given it
  (:mod:`defacebench.rating.server`).

:func:`rater_order` shuffles the reports per rater, seeded by the rater's name and the study
seed, so that the order differs between raters and is the same each time one rater resumes;
optionally some reports are shown a second time later in the session (the paper showed 40
images per condition twice, for intra-rater agreement).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import io
from .visual import VIEWS, render_views

#: Pattern of a report identifier (48 random bits in hex).
REPORT_ID = re.compile(r"^[0-9a-f]{12}$")

#: Columns of the key file.
KEY_COLUMNS = ("randomized_id", "subject", "variant", "defaced", "method", "dataset", "image")

#: Name of the manifest in the reports folder (identifiers and views; never subjects or variants).
MANIFEST = "manifest.json"

#: The variant name of the nondefaced image (as in the workflow's ``VARIANTS``).
NONDEFACED = "none"


class BlindingError(ValueError):
    """A report folder, key or variant list that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class ImageVariant:
    """One image to be rated: a subject's image as it is (``variant`` ``none``) or defaced by a method."""

    subject: str
    variant: str
    image: Path
    brain_mask: Path | None = None
    layout_reference: Path | None = None
    dataset: str = ""

    @property
    def defaced(self) -> int:
        return int(self.variant != NONDEFACED)


def report_file(reports_dir: str | Path, report_id: str, view: str) -> Path:
    """Where a report's view lies: ``<reports_dir>/<id>_<view>.png``."""
    return Path(reports_dir) / f"{report_id}_{view}.png"


def new_report_ids(count: int) -> list[str]:
    """``count`` distinct identifiers from the OS's random source (nothing to derive them from)."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(secrets.token_hex(6))
    return list(ids)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def build_reports(
    variants: list[ImageVariant], reports_dir: str | Path, key_path: str | Path, study_seed: int, repeats: int = 0
) -> Path:
    """Draw every variant's views under a random identifier; write the manifest and the key. Returns the key path.

    ``study_seed`` and ``repeats`` (reports each rater sees twice) go to the manifest for
    :func:`rater_order`. Refuses a key inside the reports folder (the server serves that folder)
    and duplicate (subject, variant) pairs.
    """
    reports_dir, key_path = Path(reports_dir), Path(key_path)
    if _inside(key_path, reports_dir):
        raise BlindingError(
            f"key {key_path}: lies inside the reports folder {reports_dir}, which the rating "
            "server serves; write the key elsewhere"
        )
    if not variants:
        raise BlindingError(f"{reports_dir}: no image variants to report")
    seen = set()
    for variant in variants:
        pair = (variant.subject, variant.variant)
        if pair in seen:
            raise BlindingError(f"subject {variant.subject!r}, variant {variant.variant!r}: listed twice")
        seen.add(pair)
    if repeats < 0 or repeats > len(variants):
        raise BlindingError(f"repeats: {repeats} is not between 0 and the number of reports ({len(variants)})")
    reports_dir.mkdir(parents=True, exist_ok=True)
    ids = new_report_ids(len(variants))
    # drawn in a random order, so that file times and any listing order say nothing about the variants
    drawing_order = np.random.default_rng(secrets.randbits(64)).permutation(len(variants))
    views: dict[str, list[str]] = {}
    for index in drawing_order:
        variant, report_id = variants[index], ids[index]
        out = {
            view: report_file(reports_dir, report_id, view)
            for view in VIEWS
            if view != "mask" or variant.brain_mask is not None
        }
        written = render_views(
            variant.image, out, brain_mask=variant.brain_mask, layout_reference=variant.layout_reference
        )
        views[report_id] = [view for view in VIEWS if view in written]
    manifest = {
        "format": 1,
        "study_seed": int(study_seed),
        "repeats": int(repeats),
        "reports": [{"id": report_id, "views": views[report_id]} for report_id in sorted(views)],
    }
    io.write_json(manifest, reports_dir / MANIFEST)
    rows = sorted(zip(ids, variants), key=lambda pair: (pair[1].subject, pair[1].variant))
    write_key(
        [
            {
                "randomized_id": report_id,
                "subject": v.subject,
                "variant": v.variant,
                "defaced": v.defaced,
                "method": "" if v.variant == NONDEFACED else v.variant,
                "dataset": v.dataset,
                "image": str(v.image),
            }
            for report_id, v in rows
        ],
        key_path,
    )
    return key_path


def write_key(rows: list[dict], key_path: str | Path) -> Path:
    """Write the key file (tab-separated, :data:`KEY_COLUMNS`) atomically, readable by its owner only."""
    key_path = Path(key_path)
    with io.atomic_path(key_path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=KEY_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    os.chmod(key_path, 0o600)  # the key un-blinds the study: not for the raters' eyes
    return key_path


def read_manifest(reports_dir: str | Path) -> dict:
    """The reports folder's manifest, checked: identifiers, their views, the study seed and repeats."""
    path = Path(reports_dir) / MANIFEST
    if not path.is_file():
        raise BlindingError(
            f"{path}: no manifest; build the reports first (defacebench-rate build, or the "
            "workflow with rating: {reports: true})"
        )
    try:
        manifest = io.read_json(path)
    except json.JSONDecodeError as exc:
        raise BlindingError(f"{path}: not valid JSON ({exc})") from exc
    for field in ("study_seed", "reports"):
        if field not in manifest:
            raise BlindingError(f"{path}: missing field '{field}'")
    for number, report in enumerate(manifest["reports"]):
        report_id = str(report.get("id", ""))
        if not REPORT_ID.match(report_id):
            raise BlindingError(f"{path}: reports[{number}].id {report_id!r} is not a report identifier")
        unknown = set(report.get("views", [])) - set(VIEWS)
        if unknown or not report.get("views"):
            raise BlindingError(f"{path}: reports[{number}].views {report.get('views')!r}: expected some of {VIEWS}")
    return manifest


def read_table(path: str | Path, columns, what: str) -> list[dict]:
    """The rows of a tab-separated file (as text) that must have ``columns``; errors name the file."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise BlindingError(f"{path}: line 1 (header): missing column(s) {', '.join(missing)}")
            return list(reader)
    except FileNotFoundError as exc:
        raise BlindingError(f"{path}: the {what} does not exist") from exc


def read_key(key_path: str | Path) -> list[dict]:
    """The key's rows, checked: the columns, identifiers, and ``defaced`` 0/1 consistent with ``variant``."""
    rows = read_table(key_path, KEY_COLUMNS, "key file")
    seen = set()
    for number, row in enumerate(rows, start=2):
        if not REPORT_ID.match(row["randomized_id"] or ""):
            raise BlindingError(
                f"{key_path}: line {number}, column 'randomized_id': {row['randomized_id']!r} "
                "is not a report identifier"
            )
        if row["randomized_id"] in seen:
            raise BlindingError(
                f"{key_path}: line {number}, column 'randomized_id': {row['randomized_id']} appears twice"
            )
        seen.add(row["randomized_id"])
        if row["defaced"] not in ("0", "1") or int(row["defaced"]) != int(row["variant"] != NONDEFACED):
            raise BlindingError(
                f"{key_path}: line {number}, column 'defaced': {row['defaced']!r} does not match "
                f"variant {row['variant']!r} (0 for '{NONDEFACED}', 1 otherwise)"
            )
    return rows


def rater_seed(rater: str, study_seed: int) -> int:
    """A 64-bit seed from the rater's name and the study seed (SHA-256: stable across runs and platforms)."""
    digest = hashlib.sha256(f"defacebench-rating\0{int(study_seed)}\0{rater}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rater_order(report_ids: list[str], rater: str, study_seed: int, repeats: int = 0) -> list[str]:
    """The sequence of reports one rater sees: a permutation seeded by rater and study, plus ``repeats`` second showings.

    Each repeated report is shown again at a random position in the second half of the
    session, after its first showing (the paper's design for intra-rater agreement; the
    analysis keeps the first rating, :func:`defacebench.quality.ratings.first_ratings`).
    """
    rng = np.random.default_rng(rater_seed(rater, study_seed))
    order = [report_ids[i] for i in rng.permutation(len(report_ids))] if report_ids else []
    half = len(order) // 2
    if repeats:
        pool = half if half >= repeats else len(order)
        repeated = [order[i] for i in sorted(rng.choice(pool, size=repeats, replace=False))]
        for report_id in repeated:
            first = order.index(report_id)
            position = int(rng.integers(max(first + 1, half), len(order) + 1))
            order.insert(position, report_id)
    return order
