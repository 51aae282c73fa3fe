"""After rating: un-blind the ratings with the key and test whether defacing biased them, per defacing method.

The analysis is Provins et al. (2025), PLoS Biol 23:e3003149, as implemented in
:mod:`defacebench.quality.ratings`: each rater's first rating of each image, the mixed model
``rating ~ defaced + (1|subject) + (1|rater)`` against the model without ``defaced`` by a
likelihood-ratio test (:func:`~defacebench.quality.ratings.lmm_table`), and per rater and pooled
Bland-Altman bias (nondefaced minus defaced) with ICC(A,1)
(:func:`~defacebench.quality.ratings.agreement_by_rater`). With several defacing methods each is
compared with the nondefaced images on its own: the model's ``defaced`` contrast is one method
against none.

This module only adapts: :func:`unblind` joins the rating server's blinded rows with the key into
the published S1 layout, which :func:`~defacebench.quality.ratings.validate_ratings` reads
unchanged; raters who have not yet rated both conditions of a method are left out of that
method's models (``validate_ratings`` refuses them) and named in the ``raters_left_out`` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import atomic_path
from ..quality import ratings as rating_stats
from .blinding import read_key
from .store import RATINGS_COLUMNS, RatingsStore, write_rows_atomically

#: Output files of :func:`analyse` (in the output folder).
OUTPUTS = ("ratings_unblinded.tsv", "ratings_lmm.tsv", "ratings_agreement.tsv")


class RatingsAnalysisError(ValueError):
    """Ratings that cannot be un-blinded or analysed; the message names the file and field."""


def unblind(ratings_path: str | Path, key_path: str | Path) -> list[dict]:
    """The stored ratings with ``subject``, ``defaced``, ``dataset`` and ``method`` filled from the key.

    Row order (the order of rating, which "first rating" refers to) is kept. Raises
    :class:`RatingsAnalysisError` for an identifier the key does not know.
    """
    key = {row["randomized_id"]: row for row in read_key(key_path)}
    rows = RatingsStore(ratings_path).rows()
    if not rows:
        raise RatingsAnalysisError(f"{ratings_path}: no ratings yet")
    unblinded = []
    for number, row in enumerate(rows, start=2):
        entry = key.get(row["randomized_id"])
        if entry is None:
            raise RatingsAnalysisError(
                f"{ratings_path}: line {number}, column 'randomized_id': "
                f"{row['randomized_id']!r} is not in the key {key_path}; were the ratings "
                "made on reports built with another key?"
            )
        try:
            rating = float(row["rating"])
        except ValueError:
            rating = float("nan")
        low, high = rating_stats.RATING_SCALE
        if not low <= rating <= high:  # the server never writes one; a hand-edited file might
            raise RatingsAnalysisError(
                f"{ratings_path}: line {number}, column 'rating': {row['rating']!r} is not a "
                f"number from {low:g} to {high:g}"
            )
        unblinded.append(
            {
                **row,
                "subject": entry["subject"],
                "defaced": entry["defaced"],
                "dataset": entry["dataset"],
                "method": entry["method"],
            }
        )
    return unblinded


def method_ratings(unblinded: pd.DataFrame, method: str) -> tuple[pd.DataFrame, list[str]]:
    """The nondefaced ratings and one method's, typed by ``validate_ratings``; and the raters left out.

    A rater is left out when they rated only one of the two conditions so far.
    """
    rows = unblinded[(unblinded["method"] == method) | (unblinded["defaced"] == "0")]
    conditions = rows.groupby("rater_id")["defaced"].nunique()
    left_out = sorted(conditions[conditions < 2].index)
    rows = rows[~rows["rater_id"].isin(left_out)]
    if rows.empty:
        return rows, left_out
    return rating_stats.validate_ratings(rows, f"ratings of method {method}"), left_out


def analyse(
    ratings_path: str | Path, key_path: str | Path, out_dir: str | Path, n_boot: int = 10000, seed: int = 0
) -> dict[str, Path]:
    """Un-blind and analyse; write :data:`OUTPUTS` to ``out_dir`` (atomically) and return their paths.

    ``ratings_lmm.tsv``: :data:`~defacebench.quality.ratings.LMM_COLUMNS` per method and model;
    ``ratings_agreement.tsv``: Bland-Altman and ICC per method and rater, and pooled.
    """
    out_dir = Path(out_dir)
    unblinded_rows = unblind(ratings_path, key_path)
    paths = {"unblinded": write_rows_atomically(out_dir / OUTPUTS[0], unblinded_rows, columns=RATINGS_COLUMNS)}
    table = pd.DataFrame(unblinded_rows, columns=list(RATINGS_COLUMNS)).astype(str)
    methods = sorted(set(table["method"]) - {""})
    if not methods:
        raise RatingsAnalysisError(f"{ratings_path}: only nondefaced images rated so far; nothing to compare")
    lmm_tables, agreement_tables = [], []
    for method in methods:
        ratings, left_out = method_ratings(table, method)
        if ratings.empty:
            continue
        try:
            lmm = rating_stats.lmm_table(ratings)
        except ValueError as exc:
            raise RatingsAnalysisError(
                f"{ratings_path}: method {method}: the mixed model cannot be fitted ({exc})"
            ) from exc
        pairs, unpaired = rating_stats.rating_pairs(ratings)
        agreement = rating_stats.agreement_by_rater(pairs, n_boot=n_boot, seed=seed) if len(pairs) else None
        lmm.insert(0, "method", method)
        lmm["raters_left_out"] = ",".join(left_out)
        lmm_tables.append(lmm)
        if agreement is not None:
            agreement.insert(0, "method", method)
            agreement["unpaired_ratings"] = unpaired
            agreement_tables.append(agreement)
    if not lmm_tables:
        raise RatingsAnalysisError(f"{ratings_path}: no rater has rated both nondefaced and defaced images yet")
    paths["lmm"] = _write_tsv(pd.concat(lmm_tables, ignore_index=True), out_dir / OUTPUTS[1])
    agreement = pd.concat(agreement_tables, ignore_index=True) if agreement_tables else pd.DataFrame()
    paths["agreement"] = _write_tsv(agreement, out_dir / OUTPUTS[2])
    return paths


def _write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")  # NaN written as an empty cell
    return path


def defacing_effects(lmm: pd.DataFrame) -> pd.DataFrame:
    """The preregistered test's rows (all raters, term ``defaced``) of a ``ratings_lmm.tsv`` table, one per method."""
    rows = lmm[(lmm["model"] == "all_raters") & (lmm["term"] == "defaced")]
    return rows[["method", "estimate", "se", "chi2", "p", "n_ratings", "n_subjects", "n_raters"]].reset_index(drop=True)
