"""Manual quality ratings of nondefaced and defaced images (Provins et al. 2025, PLoS Biol 23:e3003149).

Four raters rated 185 IXI T1w images, each seen nondefaced and defaced (PyDeface), blinded and
shuffled, on a continuous 1-4 scale (1 exclude, 2 poor, 3 acceptable, 4 excellent); 40 images
per condition were shown to each rater twice. This module

- loads and validates a ratings table (:func:`load_ratings`; errors name file, line and column);
- keeps a rater's first rating of an image shown twice (:func:`first_ratings`), as the paper's
  mixed models do;
- fits ``rating ~ defaced + (1|subject) + (1|rater)`` and ``rating ~ 1 + (1|subject) + (1|rater)``
  by maximum likelihood and compares them by a likelihood-ratio test (:func:`defacing_lrt`), on
  all ratings and on the subsets the paper discusses (:func:`lmm_table`);
- pairs each rater's nondefaced and defaced ratings of a subject (:func:`rating_pairs`) for
  Bland-Altman analysis and ICC per rater and pooled (:func:`agreement_by_rater`).

Row order in the file is the order of rating (the published table is in the order the ratings
were collected, raters interleaved), which is what "first" means.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import lmm, paired

#: Columns a ratings table must have (others, e.g. ``time_sec`` or ``comments``, are kept unread).
REQUIRED_COLUMNS = ("rater_id", "subject", "defaced", "rating")

#: The rating scale (Provins et al. 2025: 1 exclude, 2 poor, 3 acceptable, 4 excellent, continuous).
RATING_SCALE = (1.0, 4.0)

#: Images "rated poor": a nondefaced rating below this rounds to "poor" (2) or "exclude" (1).
POOR_BELOW = 2.5

#: Label of the pooled row of the agreement table.
POOLED = "pooled"


class RatingsError(ValueError):
    """A ratings table that cannot be analysed; the message names the file, line and column."""


def row_location(path, index: int, column: str) -> str:
    """Where data row ``index`` (0-based) of a table file is, for error messages: line 1 is the header."""
    return f"{path}: line {index + 2} (data row {index + 1}), column '{column}'"


def _first_bad(path, bad: pd.Series, values: pd.Series, column: str, problem: str) -> RatingsError:
    rows = np.flatnonzero(bad.to_numpy())
    first = rows[0]
    more = f" ({len(rows) - 1} more row(s) like it)" if len(rows) > 1 else ""
    return RatingsError(f"{row_location(path, first, column)}: {values.iloc[first]!r} {problem}{more}")


def validate_ratings(raw: pd.DataFrame, path: str = "<ratings>") -> pd.DataFrame:
    """Check a ratings table read as text and return it typed: ``rater``, ``subject``, ``defaced``, ``rating``, ``order``.

    ``order`` is the data row (0-based), i.e. when the rating was made. Raises
    :class:`RatingsError` naming the file, line and column of the first problem: a missing
    column, an empty identifier, ``defaced`` other than 0/1, a rating that is not a number or
    lies outside 1-4, a rater who rated only one condition.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise RatingsError(
            f"{path}: line 1 (header): missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(map(repr, raw.columns))}"
        )
    if raw.empty:
        raise RatingsError(f"{path}: no ratings (the table has a header only)")
    table = raw.reset_index(drop=True)
    for column in ("rater_id", "subject"):
        text = table[column].fillna("").astype(str).str.strip()
        if (text == "").any():
            raise _first_bad(
                path, text == "", table[column], column, "is empty: every rating needs a rater and a subject"
            )
    defaced = table["defaced"].fillna("").astype(str).str.strip()
    bad = ~defaced.isin(["0", "1"])
    if bad.any():
        raise _first_bad(path, bad, table["defaced"], "defaced", "is not 0 (nondefaced) or 1 (defaced)")
    rating = pd.to_numeric(table["rating"], errors="coerce")
    bad = ~np.isfinite(rating.to_numpy(dtype=float))
    if bad.any():
        raise _first_bad(path, pd.Series(bad), table["rating"], "rating", "is not a number")
    low, high = RATING_SCALE
    bad = (rating < low) | (rating > high)
    if bad.any():
        raise _first_bad(path, bad, table["rating"], "rating", f"is outside the rating scale {low:g}-{high:g}")
    out = pd.DataFrame(
        {
            "rater": table["rater_id"].astype(str).str.strip(),
            "subject": table["subject"].astype(str).str.strip(),
            "defaced": defaced.astype(int),
            "rating": rating.astype(float),
            "order": np.arange(len(table)),
        }
    )
    for rater, group in out.groupby("rater", sort=True):
        conditions = set(group["defaced"])
        if len(conditions) < 2:
            only = "defaced" if conditions == {1} else "nondefaced"
            raise RatingsError(
                f"{row_location(path, int(group['order'].iloc[0]), 'defaced')}: rater {rater!r} rated {only} images "
                f"only ({len(group)} rating(s), every one with defaced = {conditions.pop()}); the analysis compares "
                "each rater's ratings of both conditions"
            )
    return out


def load_ratings(path: str | Path) -> pd.DataFrame:
    """Read a ratings table (tab-separated ``.tsv``, else comma-separated) and :func:`validate_ratings` it.

    Identifiers are read as text (subject ``072`` stays ``072``).
    """
    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise RatingsError(f"{path}: empty file, expected a header with {', '.join(REQUIRED_COLUMNS)}") from exc
    except pd.errors.ParserError as exc:
        raise RatingsError(
            f"{path}: not a readable {'tab' if sep == chr(9) else 'comma'}-separated table: {exc}"
        ) from exc
    return validate_ratings(raw, str(path))


def load_rater_experience(path: str | Path | None) -> dict[str, str]:
    """Rater -> experience level from the published ``rater_experience.json`` (``{"Rater 1": "advanced", ...}``).

    Keys are matched to rater ids by their number (``Rater 1`` is ``rater_01``); None gives ``{}``.
    """
    if path is None:
        return {}
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise RatingsError(f"{path}: expected a JSON object of rater -> experience level")
    return {str(k): str(v) for k, v in data.items()}


def rater_number(label: str) -> int | None:
    """The number in a rater label (``rater_01`` and ``Rater 1`` are both 1), or None."""
    match = re.search(r"(\d+)\s*$", str(label))
    return int(match.group(1)) if match else None


def experience_of(rater: str, experience: dict[str, str]) -> str:
    number = rater_number(rater)
    for label, level in experience.items():
        if label == rater or (number is not None and rater_number(label) == number):
            return level
    return ""


def first_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Each rater's first rating of each subject in each condition (the paper's rule for images shown twice)."""
    ordered = ratings.sort_values("order", kind="stable")
    return ordered.drop_duplicates(["rater", "subject", "defaced"], keep="first").reset_index(drop=True)


def rating_pairs(ratings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Each rater's nondefaced and defaced ratings of a subject, paired in the order they were made.

    A rater who saw a subject's images twice gives two pairs (first with first, second with
    second), as in the paper's Bland-Altman analysis (900 pairs, 225 per rater). Returns
    ``(pairs, unpaired)``: columns ``rater``, ``subject``, ``occurrence``, ``nondefaced``,
    ``defaced``, and the number of ratings without a partner in the other condition (left out).
    """
    ordered = ratings.sort_values("order", kind="stable").copy()
    ordered["occurrence"] = ordered.groupby(["rater", "subject", "defaced"]).cumcount()
    wide = ordered.pivot_table(
        index=["rater", "subject", "occurrence"], columns="defaced", values="rating", aggfunc="first"
    )
    wide = wide.reindex(columns=[0, 1])
    complete = wide.notna().all(axis=1)
    unpaired = int(wide.notna().sum().sum() - 2 * complete.sum())
    pairs = wide[complete].rename(columns={0: "nondefaced", 1: "defaced"}).reset_index()
    pairs.columns.name = None
    return pairs, unpaired


# --------------------------------------------------------------------------- mixed models


def _design(ratings: pd.DataFrame, with_defaced: bool) -> tuple[np.ndarray, list[str]]:
    columns = [np.ones(len(ratings))]
    names = ["Intercept"]
    if with_defaced:
        columns.append(ratings["defaced"].to_numpy(float))
        names.append("defaced")
    return np.column_stack(columns), names


def defacing_lrt(ratings: pd.DataFrame, engine: str = "dense-ml") -> dict:
    """Likelihood-ratio test of the defacing fixed effect (Provins et al. 2025, the preregistered test).

    Fits ``rating ~ defaced + (1|subject) + (1|rater)`` and ``rating ~ 1 + (1|subject) +
    (1|rater)`` by maximum likelihood (the rater term is left out when one rater is present)
    and returns the defacing ``estimate`` with its ``se``, ``chi2`` (1 df), ``p``, the
    ``intercept``, the variance components, both log-likelihoods, counts and the ``engine``
    (:data:`defacebench.quality.lmm.FIT_ENGINES`).
    """
    if ratings["defaced"].nunique() < 2:
        raise ValueError("the defacing effect needs ratings of both conditions")
    fit = lmm.FIT_ENGINES[engine]
    y = ratings["rating"].to_numpy(float)
    factors = {"subject": ratings["subject"].to_numpy()}
    if ratings["rater"].nunique() > 1:
        factors["rater"] = ratings["rater"].to_numpy()
    X1, names1 = _design(ratings, True)
    X0, names0 = _design(ratings, False)
    full = fit(y, X1, factors, names1)
    reduced = fit(y, X0, factors, names0)
    test = lmm.likelihood_ratio_test(full, reduced, df=1)
    return {
        "estimate": full.params["defaced"],
        "se": full.bse["defaced"],
        **test,
        "intercept": full.params["Intercept"],
        "intercept_se": full.bse["Intercept"],
        "n_ratings": full.n_obs,
        "n_subjects": full.n_groups["subject"],
        "n_raters": int(ratings["rater"].nunique()),
        "var_subject": full.variances["subject"],
        "var_rater": full.variances.get("rater", np.nan),
        "var_residual": full.residual_variance,
        "llf": full.llf,
        "llf_null": reduced.llf,
        "converged": bool(full.converged and reduced.converged),
        "engine": full.engine,
    }


def poor_images(ratings: pd.DataFrame, poor_below: float = POOR_BELOW) -> pd.DataFrame:
    """The ratings of (rater, subject) pairs whose nondefaced image that rater rated below ``poor_below``.

    Both conditions are kept, so the defacing effect is estimated on images the rater judged
    poor (or worse) with the face visible: the paper found the bias largest there (Fig 2).
    """
    nondefaced = ratings[ratings["defaced"] == 0]
    poor = nondefaced.loc[nondefaced["rating"] < poor_below, ["rater", "subject"]].drop_duplicates()
    return ratings.merge(poor, on=["rater", "subject"], how="inner")


def lmm_subsets(first_rated: pd.DataFrame, poor_below: float = POOR_BELOW) -> list[tuple[str, str, pd.DataFrame]]:
    """The models of the ratings table: ``(name, description, ratings)``.

    ``all_raters`` (the preregistered test); ``without_<rater>`` (each rater left out in turn,
    since the bias was largest for the most experienced rater); ``poor_nondefaced`` (images a
    rater rated poor, see :func:`poor_images`); ``only_<rater>`` (each rater alone, subject
    random intercepts only).
    """
    raters = sorted(first_rated["rater"].unique())
    subsets = [("all_raters", "all raters, first rating of each image", first_rated)]
    if len(raters) > 2:
        subsets += [(f"without_{r}", f"all raters but {r}", first_rated[first_rated["rater"] != r]) for r in raters]
    poor = poor_images(first_rated, poor_below)
    if poor["defaced"].nunique() == 2 and poor["subject"].nunique() > 2:
        subsets.append(("poor_nondefaced", f"images the rater rated below {poor_below:g} nondefaced", poor))
    subsets += [(f"only_{r}", f"{r} alone", first_rated[first_rated["rater"] == r]) for r in raters]
    return subsets


#: Columns describing the fitted model pair, the same on its two rows (Intercept, defaced).
MODEL_COLUMNS = (
    "n_ratings",
    "n_subjects",
    "n_raters",
    "var_subject",
    "var_rater",
    "var_residual",
    "llf",
    "llf_null",
    "converged",
    "engine",
)

LMM_COLUMNS = ("model", "description", "term", "estimate", "se", "chi2", "df", "p", *MODEL_COLUMNS)

LMM_LEGEND = {
    "model": "which ratings: all_raters (the preregistered test), without_<rater>, poor_nondefaced, only_<rater>",
    "description": "the ratings the model was fitted to",
    "term": "fixed effect: Intercept (mean nondefaced rating) or defaced (change of the rating when defaced)",
    "estimate": "ML estimate of the fixed effect",
    "se": "its standard error (ML)",
    "chi2": "likelihood-ratio statistic of the model with defaced against the model without (defaced row)",
    "df": "degrees of freedom of the likelihood-ratio test",
    "p": "p value of the likelihood-ratio test (chi-squared)",
    "n_ratings": "ratings in the model (first rating of each image per rater)",
    "n_subjects": "subjects (random intercepts)",
    "n_raters": "raters (random intercepts when more than one)",
    "var_subject": "variance of the subject random intercepts",
    "var_rater": "variance of the rater random intercepts",
    "var_residual": "residual variance",
    "llf": "maximised log-likelihood with defaced",
    "llf_null": "maximised log-likelihood without defaced",
    "converged": "both optimisations converged",
    "engine": "dense-ml (defacebench.quality.lmm) or statsmodels",
}


def lmm_table(ratings: pd.DataFrame, engine: str = "dense-ml", poor_below: float = POOR_BELOW) -> pd.DataFrame:
    """:func:`defacing_lrt` on every model of :func:`lmm_subsets` (first ratings), one row per model and term."""
    rows = []
    for name, description, subset in lmm_subsets(first_ratings(ratings), poor_below):
        result = defacing_lrt(subset, engine)
        shared = {k: result[k] for k in MODEL_COLUMNS}
        rows.append(
            {
                "model": name,
                "description": description,
                "term": "Intercept",
                "estimate": result["intercept"],
                "se": result["intercept_se"],
                "chi2": np.nan,
                "df": np.nan,
                "p": np.nan,
                **shared,
            }
        )
        rows.append(
            {
                "model": name,
                "description": description,
                "term": "defaced",
                "estimate": result["estimate"],
                "se": result["se"],
                "chi2": result["chi2"],
                "df": result["df"],
                "p": result["p"],
                **shared,
            }
        )
    return pd.DataFrame(rows, columns=list(LMM_COLUMNS))


# --------------------------------------------------------------------------- agreement


def agreement_by_rater(
    pairs: pd.DataFrame,
    experience: dict[str, str] | None = None,
    sd_multiplier: float = paired.LOA_SD_MULTIPLIER,
    n_boot: int = paired.N_BOOTSTRAP,
    seed: int = 0,
    icc_engine: str = "closed-form",
) -> pd.DataFrame:
    """Bland-Altman (nondefaced minus defaced) and ICC(A,1) per rater, then pooled over all raters.

    ``pairs`` from :func:`rating_pairs`. Columns: ``rater``, ``experience``, then
    :data:`defacebench.quality.paired.AGREEMENT_COLUMNS`. The pooled row treats every pair
    alike (the paper's "All raters"), whichever rater made it.
    """
    experience = experience or {}
    groups = [(r, g) for r, g in pairs.groupby("rater", sort=True)] + [(POOLED, pairs)]
    rows = []
    for rater, group in groups:
        row = paired.bland_altman_agreement(
            group["nondefaced"].to_numpy(),
            group["defaced"].to_numpy(),
            sd_multiplier=sd_multiplier,
            n_boot=n_boot,
            seed=seed,
            icc_engine=icc_engine,
        )
        rows.append({"rater": rater, "experience": experience_of(rater, experience) if rater != POOLED else "", **row})
    return pd.DataFrame(rows, columns=["rater", "experience", *paired.AGREEMENT_COLUMNS])


def plot_bland_altman(pairs: pd.DataFrame, agreement: pd.DataFrame, out_png: str | Path) -> Path:
    """Bland-Altman plots of the ratings, pooled and per rater (Bland & Altman 1986, Fig 2).

    x: mean of the two ratings; y: nondefaced minus defaced; lines: bias (with its parametric
    CI as a band) and limits of agreement, from ``agreement`` (:func:`agreement_by_rater`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    panels = [POOLED] + sorted(pairs["rater"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), sharey=True, squeeze=False)
    by_rater = agreement.set_index("rater")
    for ax, panel in zip(axes[0], panels):
        group = pairs if panel == POOLED else pairs[pairs["rater"] == panel]
        row = by_rater.loc[panel]
        mean = (group["nondefaced"] + group["defaced"]) / 2
        diff = group["nondefaced"] - group["defaced"]
        ax.scatter(mean, diff, s=6, alpha=0.35, color="0.2", linewidths=0)
        ax.axhspan(row["ci_low"], row["ci_high"], color="tab:blue", alpha=0.25)
        ax.axhline(row["bias"], color="tab:blue", lw=1.2, label=f"bias {row['bias']:.3f}")
        for limit in ("loa_low", "loa_high"):
            ax.axhline(row[limit], color="tab:red", lw=0.9, ls="--")
            ax.annotate(
                f"{row[limit]:.2f}",
                (1, row[limit]),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="tab:red",
                ha="right",
                va="bottom",
            )
        ax.axhline(0, color="0.6", lw=0.6)
        title = "all raters" if panel == POOLED else panel
        if row.get("experience"):
            title += f" ({row['experience']})"
        ax.set_title(f"{title}\nn={int(row['n'])}, ICC(A,1) {row['icc']:.3f}", fontsize=9)
        ax.set_xlabel("mean of the two ratings", fontsize=8)
        ax.legend(fontsize=7, loc="lower left")
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("nondefaced - defaced rating", fontsize=8)
    fig.suptitle(
        "Manual ratings, nondefaced vs defaced (Provins et al. 2025 data): bias with 95 % CI, "
        "limits of agreement dashed",
        fontsize=9,
    )
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(out_png)
