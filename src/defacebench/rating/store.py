"""The ratings file: an append-only table in the layout of Provins et al. (2025)'s S1 Data, one row per submission.

Columns :data:`S1_COLUMNS` are those of the published table (PLoS Biol 23:e3003149, S1 Data:
``randomized_id, rater_id, dataset, rating, time_sec, artifacts, confidence, comments, defaced,
subject``), so :func:`defacebench.quality.ratings.load_ratings` reads an un-blinded file
unchanged. The rating server fills what a rater gives and leaves ``dataset``, ``defaced``,
``subject`` (and the extra ``method``) empty: it does not know them. They are filled from the key
by :func:`defacebench.rating.analysis.unblind`. Extra columns: ``method`` (the defacing method,
after un-blinding), ``position`` (the 0-based place in the rater's sequence, which makes a
repeated submission detectable) and ``submitted_at`` (UTC).

Every append takes an exclusive lock, rewrites the whole file to a temporary file, flushes it to
disk and renames it over the old one: a reader (or a second rater's server writing to the same
file) sees the file before or after a row, never half a row, and a row acknowledged to the
browser survives the server being killed.
"""

from __future__ import annotations

import csv
import fcntl
import io as _text_io
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .. import io

#: The published table's columns, in its order (Provins et al. 2025, S1 Data).
S1_COLUMNS = (
    "randomized_id",
    "rater_id",
    "dataset",
    "rating",
    "time_sec",
    "artifacts",
    "confidence",
    "comments",
    "defaced",
    "subject",
)

#: Columns added here: the method after un-blinding, the place in the rater's sequence, the time of submission.
EXTRA_COLUMNS = ("method", "position", "submitted_at")

RATINGS_COLUMNS = S1_COLUMNS + EXTRA_COLUMNS

#: Artefact keys and labels of MRIQC's rating widget (Esteban et al. 2017; Esteban et al. 2019, Sci Data
#: 6:30), the ones Provins et al. (2025) recorded in S1 Data's ``artifacts`` column, in the widget's order.
ARTIFACTS = {
    "head-motion": "Head motion",
    "eye-spillover": "Eye spillover through the phase-encoding axis",
    "noneye-spillover": "Non-eye spillover through the phase-encoding axis",
    "coil-failure": "Coil failure",
    "noise-global": "Global noise",
    "noise-local": "Local noise",
    "em-perturbation": "Electromagnetic interference / perturbation",
    "wrap-around": "Problematic field of view / wrap-around (aliasing)",
    "ghost-aliasing": "Aliasing ghosts",
    "ghost-other": "Other ghosts",
    "inu": "Intensity non-uniformity (B1 bias)",
    "field-variation": "Temporal field variation",
    "processing": "Processing (denoising, defacing, resampling)",
    "uncategorized": "Other (uncategorized) artefact",
}

#: The rating scale's anchors (Provins et al. 2025; MRIQC's widget) on the continuous scale
#: :data:`defacebench.quality.ratings.RATING_SCALE`.
RATING_ANCHORS = {1: "exclude", 2: "poor", 3: "acceptable", 4: "excellent"}

#: Rater confidence, as MRIQC's widget records it: a 0 (doubtful) to 4 (confident) slider.
CONFIDENCE_RANGE = (0.0, 4.0)


class DuplicateRating(ValueError):
    """A rating for a place in a rater's sequence that already has one (a form sent twice)."""


class StoreError(ValueError):
    """A ratings file that cannot be appended to; the message names the file and what is wrong."""


def _one_line(text: str) -> str:
    # one row per line: the analysis reports errors by line number
    return " ".join(str(text).split())


@contextmanager
def _locked(path: Path):
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class RatingsStore:
    """Append-only ratings file (tab-separated, :data:`RATINGS_COLUMNS`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists():
            self._check_header()

    def _check_header(self) -> None:
        with open(self.path, newline="") as fh:
            header = fh.readline().rstrip("\n").split("\t")
        if tuple(header[: len(S1_COLUMNS)]) != S1_COLUMNS or not set(EXTRA_COLUMNS) <= set(header):
            raise StoreError(
                f"{self.path}: line 1 (header): expected the columns {', '.join(RATINGS_COLUMNS)}, "
                f"found {', '.join(header)}; is this a ratings file of defacebench-rate?"
            )

    def rows(self) -> list[dict]:
        """Every stored row, as text, in the order of submission."""
        if not self.path.exists():
            return []
        with open(self.path, newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))

    def rated_positions(self, rater: str) -> dict[int, str]:
        """Place in the sequence -> report identifier, of the rater's stored ratings."""
        done = {}
        for number, row in enumerate(self.rows(), start=2):
            if row["rater_id"] != rater:
                continue
            try:
                done[int(row["position"])] = row["randomized_id"]
            except ValueError as exc:
                raise StoreError(
                    f"{self.path}: line {number}, column 'position': {row['position']!r} is not a whole number"
                ) from exc
        return done

    def append(
        self,
        *,
        randomized_id: str,
        rater_id: str,
        rating: float,
        time_sec: float,
        artifacts: list[str],
        confidence: float,
        comments: str,
        position: int,
    ) -> dict:
        """Store one submitted rating (blinded: no subject or condition); returns the row written.

        Raises :class:`DuplicateRating` when the rater already has a rating at ``position``.
        """
        row = {
            "randomized_id": randomized_id,
            "rater_id": rater_id,
            "dataset": "",
            "rating": f"{rating:.6g}",
            "time_sec": f"{time_sec:.3f}",
            "artifacts": json.dumps(list(artifacts), separators=(",", ":")),
            "confidence": f"{confidence:.6g}",
            "comments": _one_line(comments),
            "defaced": "",
            "subject": "",
            "method": "",
            "position": str(int(position)),
            "submitted_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        with _locked(self.path):
            if self.path.exists():
                self._check_header()
            if int(position) in self.rated_positions(rater_id):
                raise DuplicateRating(f"rater {rater_id!r} already has a rating at position {position + 1}")
            existing = self.path.read_text() if self.path.exists() else ""
            write_rows_atomically(self.path, [row], prefix=existing)
        return row


def format_rows(rows: list[dict], columns=RATINGS_COLUMNS, header: bool = True) -> str:
    """Rows as tab-separated text (fields with quotes quoted as the published table is)."""
    buffer = _text_io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), delimiter="\t", lineterminator="\n", extrasaction="ignore"
    )
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_rows_atomically(path: str | Path, rows: list[dict], prefix: str = "", columns=RATINGS_COLUMNS) -> Path:
    """Write ``prefix`` (an existing file's text, header included) followed by ``rows``; flushed to disk, then renamed.

    With an empty ``prefix`` a header is written first.
    """
    path = Path(path)
    text = prefix + format_rows(rows, columns, header=not prefix)
    with io.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself reaches the disk
    finally:
        os.close(directory)
    return path
