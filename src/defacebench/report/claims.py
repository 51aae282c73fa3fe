"""Published versus reproduced: each published claim beside this run's value and a verdict.

The claims of de Sitter et al. (2020, Eur Radiol 30:1062) live as data in
``defacebench/data/desitter2020_claims.yaml`` (the claim, the published value, its
source in the paper, and how to check it against the study tables); this module checks
each against a run's failure and agreement tables (:mod:`defacebench.tables`).
The published values of Provins et al. (2025, PLoS Biol 23:e3003149) come from the
quality arm's ``provins2025_published.yaml`` when it is installed.

Verdicts (:data:`VERDICTS`): *same direction* (the effect has the published sign and
the paired t test is significant at the claim's alpha), *same direction, not
significant*, *within the published interval* (every value of ours lies in the
published range), *published value within our 95 % CI*, *differs*, and *not
testable* (with why: the outcome or method did not run, too few complete cases, a
statistic the table could not compute). A verdict from simulated cohorts is marked
as such: it tests the pipeline on synthetic heads, not the paper's patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SAME_DIRECTION = "same direction"
SAME_DIRECTION_NOT_SIGNIFICANT = "same direction, not significant"
WITHIN_INTERVAL = "within the published interval"
WITHIN_OUR_CI = "published value within our 95 % CI"
DIFFERS = "differs"
NOT_TESTABLE = "not testable"
VERDICTS = (SAME_DIRECTION, SAME_DIRECTION_NOT_SIGNIFICANT, WITHIN_INTERVAL, WITHIN_OUR_CI, DIFFERS, NOT_TESTABLE)

DESITTER_CLAIMS = "desitter2020_claims.yaml"
PROVINS_PUBLISHED = "provins2025_published.yaml"
DESITTER = "de Sitter et al. 2020"
PROVINS = "Provins et al. 2025"


@dataclass
class ClaimResult:
    """One row of the published-vs-reproduced table."""

    paper: str
    claim_id: str
    claim: str
    published: str
    source: str
    scope: str  # "study" or a cohort name
    data: str  # "simulated", "real", "partly simulated" or "" (nothing ran)
    obtained: str
    verdict: str
    why: str


def load_claims(path: str | Path | None = None) -> list[dict]:
    """The de Sitter et al. (2020) claims (the packaged YAML unless ``path`` is given)."""
    if path is None:
        text = resources.files("defacebench").joinpath("data", DESITTER_CLAIMS).read_text()
    else:
        text = Path(path).read_text()
    return list(yaml.safe_load(text)["claims"])


def load_published_entries(path: str | Path | None = None) -> list[dict]:
    """Entries of another paper's published-values YAML (keys ``claim``, ``published``, ``source``).

    Read defensively, as another arm owns the file: a list of entries, a mapping with a
    ``claims`` list, or a mapping of id to entry are all accepted; absent file: no entries.
    """
    if path is None:
        resource = resources.files("defacebench").joinpath("data", PROVINS_PUBLISHED)
        if not resource.is_file():
            return []
        text = resource.read_text()
    else:
        if not Path(path).is_file():
            return []
        text = Path(path).read_text()
    content = yaml.safe_load(text) or []
    if isinstance(content, dict):
        listed = next((content[k] for k in ("claims", "values", "published") if isinstance(content.get(k), list)), None)
        if listed is not None:
            content = listed
        else:
            content = [
                {"id": key, **value} if isinstance(value, dict) else {"id": key, "published": value}
                for key, value in content.items()
            ]
    return [entry for entry in content if isinstance(entry, dict)]


# --------------------------------------------------------------------------- helpers


def _data_label(cohorts) -> str:
    simulated = {c.simulated for c in cohorts}
    if not simulated:
        return ""
    if simulated == {True}:
        return "simulated"
    return "real" if simulated == {False} else "partly simulated"


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _num(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def _rows(cohorts, table: str) -> pd.DataFrame:
    """A table of every cohort, stacked, with a ``cohort`` column."""
    frames = [c.table(table).assign(cohort=c.name) for c in cohorts if not c.table(table).empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _result(entry: dict, paper: str, scope: str, data: str, obtained: str, verdict: str, why: str) -> ClaimResult:
    return ClaimResult(
        paper=paper,
        claim_id=str(entry.get("id", "")),
        claim=str(entry.get("claim", "")),
        published=str(entry.get("published", "")),
        source=str(entry.get("source", "")),
        scope=scope,
        data=data,
        obtained=obtained,
        verdict=verdict,
        why=why,
    )


def _missing_reason(cohorts, methods: list[str], outcome: str | None, method: str | None) -> str:
    """Why no row exists for an outcome and method: not configured, or no paired record."""
    if outcome and not any(
        outcome in c.outcomes or (not c.table("records").empty and outcome in set(c.table("records")["outcome"]))
        for c in cohorts
    ):
        return f"outcome {outcome} was not run in this study"
    if method and method not in methods:
        return f"method {method} was not run in this study"
    return f"no {outcome or ''} {method or ''} row in the agreement table (no paired records)".replace("  ", " ")


# --------------------------------------------------------------------------- checks


def _failure_rate_range(entry, check, cohorts, methods):
    side = check.get("side", "defaced")
    low, high = (float(v) for v in check["interval"])
    failures = _rows(cohorts, "failures")
    column = "failed_defaced" if side == "defaced" else "failed_full"
    if failures.empty or column not in failures or "n_subjects" not in failures:
        return [_study_result(entry, cohorts, "n/a", NOT_TESTABLE, "no failure table: no analysis ran")]
    failures = failures[pd.to_numeric(failures["n_subjects"], errors="coerce") > 0]
    if side == "full":  # one full image per subject and outcome, repeated on every method's row
        failures = failures.drop_duplicates(["cohort", "outcome"])
    rates = failures[column].astype(float) / failures["n_subjects"].astype(float)
    labels = [f"{r.cohort} {r.outcome}" + ("" if side == "full" else f" {r.method}") for r in failures.itertuples()]
    counts = [f"{int(r[column])}/{int(r['n_subjects'])}" for _, r in failures.iterrows()]
    if rates.empty:
        return [_study_result(entry, cohorts, "n/a", NOT_TESTABLE, "no subject was analysed")]
    obtained = f"{100 * rates.min():.0f}-{_pct(rates.max())} over {len(rates)} {'outcome' if side == 'full' else 'outcome x method'} row(s)"
    outside = [
        f"{label}: {_pct(rate)} ({count})"
        for label, rate, count in zip(labels, rates, counts)
        if not low - 1e-12 <= rate <= high + 1e-12
    ]
    n = failures["n_subjects"].astype(int)
    within = f"every rate in {100 * low:.0f}-{_pct(high)} (n = {n.min()}-{n.max()} subjects per row)"
    return _interval_result(entry, cohorts, obtained, outside, within)


def _interval_result(entry, cohorts, obtained: str, outside: list[str], within_why: str) -> list[ClaimResult]:
    """A published range checked over every row of the study: differs if any row lies outside, else within."""
    if outside:
        return [_study_result(entry, cohorts, obtained, DIFFERS, "outside the published range: " + "; ".join(outside))]
    return [_study_result(entry, cohorts, obtained, WITHIN_INTERVAL, within_why)]


def _finite_icc_rows(cohorts) -> pd.DataFrame:
    agreement = _rows(cohorts, "agreement")
    if agreement.empty or "icc_a1" not in agreement:
        return pd.DataFrame()
    agreement = agreement.assign(icc_a1=pd.to_numeric(agreement["icc_a1"], errors="coerce"))
    return agreement[np.isfinite(agreement["icc_a1"])]


def _icc_range(entry, check, cohorts, methods):
    low, high = (float(v) for v in check["interval"])
    rows = _finite_icc_rows(cohorts)
    if rows.empty:
        return [
            _study_result(
                entry,
                cohorts,
                "n/a",
                NOT_TESTABLE,
                "no ICC(A,1) could be computed (too few complete cases or no agreement table)",
            )
        ]
    obtained = f"{_num(rows['icc_a1'].min())}-{_num(rows['icc_a1'].max())} over {len(rows)} outcome x method row(s)"
    outside = [
        f"{r.cohort} {r.outcome} {r.method}: {_num(r.icc_a1)}" for r in rows.itertuples() if not low <= r.icc_a1 <= high
    ]
    return _interval_result(entry, cohorts, obtained, outside, f"every ICC(A,1) in {low}-{high}")


def _icc_extreme(entry, check, cohorts, methods):
    outcome, method, which = check["outcome"], check["method"], check.get("which", "min")
    rows = _finite_icc_rows(cohorts)
    target = rows[(rows["outcome"] == outcome) & (rows["method"] == method)] if not rows.empty else rows
    if target.empty:
        return [
            _study_result(
                entry,
                cohorts,
                "n/a",
                NOT_TESTABLE,
                _icc_missing(cohorts, methods, outcome, method),
            )
        ]
    if len(rows) < 2:
        return [
            _study_result(
                entry,
                cohorts,
                "n/a",
                NOT_TESTABLE,
                "a ranking needs at least two ICC(A,1) values",
            )
        ]
    extreme = rows.loc[rows["icc_a1"].idxmin() if which == "min" else rows["icc_a1"].idxmax()]
    word = "lowest" if which == "min" else "highest"
    obtained = f"{word}: {extreme['outcome']} {extreme['method']} ({extreme['cohort']}), {_num(extreme['icc_a1'])}"
    mine = target["icc_a1"].min() if which == "min" else target["icc_a1"].max()
    if np.isclose(mine, extreme["icc_a1"]):
        return [
            _study_result(
                entry,
                cohorts,
                obtained,
                SAME_DIRECTION,
                f"{outcome} {method} holds the {word} of {len(rows)} ICC(A,1) values",
            )
        ]
    rank = int((rows["icc_a1"] < mine).sum() + 1) if which == "min" else int((rows["icc_a1"] > mine).sum() + 1)
    return [
        _study_result(
            entry,
            cohorts,
            obtained,
            DIFFERS,
            f"{outcome} {method}: {_num(mine)}, rank {rank} of {len(rows)} counting from the {word}",
        )
    ]


def _icc_missing(cohorts, methods, outcome, method) -> str:
    agreement = _rows(cohorts, "agreement")
    if not agreement.empty and {"outcome", "method"} <= set(agreement):
        row = agreement[(agreement["outcome"] == outcome) & (agreement["method"] == method)]
        if not row.empty:
            note = str(row.iloc[0].get("note", "") or "")
            n = row.iloc[0].get("n_complete")
            return f"ICC(A,1) not computed for {outcome} {method} (n = {n} complete cases{': ' + note if note and note != 'nan' else ''})"
    return _missing_reason(cohorts, methods, outcome, method)


def _per_cohort_rows(cohorts, outcome, method):
    """(cohort, agreement row) for each cohort that has a row for ``outcome`` and ``method``."""
    for cohort in cohorts:
        agreement = cohort.table("agreement")
        if agreement.empty or not {"outcome", "method"} <= set(agreement):
            continue
        row = agreement[(agreement["outcome"] == outcome) & (agreement["method"] == method)]
        if not row.empty:
            yield cohort, row.iloc[0]


def _note(row) -> str:
    note = row.get("note", "")
    return "" if note is None or (isinstance(note, float) and not np.isfinite(note)) else str(note)


def _icc_value(entry, check, cohorts, methods):
    outcome, method, value = check["outcome"], check["method"], float(check["value"])
    out = []
    for cohort, row in _per_cohort_rows(cohorts, outcome, method):
        icc, low, high = (
            float(pd.to_numeric(row.get(k), errors="coerce")) for k in ("icc_a1", "icc_a1_ci_low", "icc_a1_ci_high")
        )
        n = int(row.get("n_complete", 0) or 0)
        data = _data_label([cohort])
        if not np.isfinite(icc):
            out.append(
                _result(
                    entry,
                    DESITTER,
                    cohort.name,
                    data,
                    "n/a",
                    NOT_TESTABLE,
                    f"ICC(A,1) not computed (n = {n} complete cases){': ' + _note(row) if _note(row) else ''}",
                )
            )
            continue
        obtained = f"{_num(icc)} (95 % CI {_num(low)}-{_num(high)}), n = {n}"
        if np.isfinite(low) and np.isfinite(high) and low <= value <= high:
            out.append(
                _result(entry, DESITTER, cohort.name, data, obtained, WITHIN_OUR_CI, f"{value} lies inside our 95 % CI")
            )
        elif not (np.isfinite(low) and np.isfinite(high)):
            out.append(
                _result(entry, DESITTER, cohort.name, data, obtained, NOT_TESTABLE, "our 95 % CI could not be computed")
            )
        else:
            side = "above" if value > high else "below"
            out.append(
                _result(entry, DESITTER, cohort.name, data, obtained, DIFFERS, f"{value} lies {side} our 95 % CI")
            )
    return out or [_untestable_in_study(entry, cohorts, methods, outcome, method)]


def _study_result(entry: dict, cohorts, obtained: str, verdict: str, why: str) -> ClaimResult:
    """A de Sitter claim's one row for the whole study (not per cohort)."""
    return _result(entry, DESITTER, "study", _data_label(cohorts), obtained, verdict, why)


def _untestable_in_study(entry, cohorts, methods, outcome, method):
    """The one row of a claim no cohort of the study could test, with why."""
    return _study_result(entry, cohorts, "n/a", NOT_TESTABLE, _missing_reason(cohorts, methods, outcome, method))


def _paired_difference(entry, check, cohorts, methods):
    outcome, method = check["outcome"], check["method"]
    sign = 1 if check.get("direction", "higher") == "higher" else -1
    alpha = float(check.get("alpha", 0.05))
    out = []
    for cohort, row in _per_cohort_rows(cohorts, outcome, method):
        diff, p = (float(pd.to_numeric(row.get(k), errors="coerce")) for k in ("mean_diff", "t_p"))
        n = int(row.get("n_complete", 0) or 0)
        data = _data_label([cohort])
        if n < 2 or not np.isfinite(diff):
            out.append(
                _result(
                    entry,
                    DESITTER,
                    cohort.name,
                    data,
                    "n/a",
                    NOT_TESTABLE,
                    f"n = {n} complete cases; a paired comparison needs at least 2",
                )
            )
            continue
        word = "higher" if diff > 0 else "lower" if diff < 0 else "unchanged"
        obtained = f"{word}: mean defaced - full {diff:+.3g} ml, paired t p = {_p(p)}, n = {n}"
        if diff * sign > 0 and np.isfinite(p) and p < alpha:
            verdict, why = SAME_DIRECTION, f"same sign, p < {alpha}"
        elif diff * sign > 0:
            verdict, why = SAME_DIRECTION_NOT_SIGNIFICANT, f"same sign, but p = {_p(p)} >= {alpha} with n = {n}"
        else:
            verdict = DIFFERS
            why = f"published {check.get('direction')}, ours {word}" + (f" (p = {_p(p)})" if np.isfinite(p) else "")
        out.append(_result(entry, DESITTER, cohort.name, data, obtained, verdict, why))
    return out or [_untestable_in_study(entry, cohorts, methods, outcome, method)]


CHECKS = {
    "failure_rate_range": _failure_rate_range,
    "icc_range": _icc_range,
    "icc_extreme": _icc_extreme,
    "icc_value": _icc_value,
    "paired_difference": _paired_difference,
}


def evaluate_claims(claims: list[dict], cohorts, methods: list[str]) -> list[ClaimResult]:
    """Check every de Sitter-style claim against the cohorts' tables (one or more rows per claim)."""
    out = []
    for entry in claims:
        check = dict(entry.get("check") or {})
        kind = check.get("kind")
        if kind not in CHECKS:
            out.append(_result(entry, DESITTER, "study", "", "n/a", NOT_TESTABLE, f"unknown check kind {kind!r}"))
            continue
        out += CHECKS[kind](entry, check, cohorts, methods)
    return out


def provins_results(
    entries: list[dict], quality_tables: dict, quality_claims: pd.DataFrame | None = None
) -> list[ClaimResult]:
    """Rows for the Provins et al. (2025) published values (``provins2025_published.yaml``).

    The quality arm owns the published values, the tables and the check
    (:func:`defacebench.quality.provins2025.claims_table`: ours, rounded to the
    decimals the paper printed, equals the published value; for ``row_extreme``
    the claimed row also holds the column's extreme). Its ``claims.tsv`` is read
    when written, else the check is run on its tables; its result maps to a
    verdict: reproduced at the printed precision -> within the published interval
    (the printed value stands for +- half its last digit), a reproduced extreme ->
    same direction, not reproduced -> differs, no value -> not testable.
    """
    checked = quality_claims if quality_claims is not None and not quality_claims.empty else None
    if checked is None and quality_tables:
        try:
            from ..quality import provins2025

            checked = provins2025.claims_table(quality_tables, provins2025.load_published())
        except (ImportError, AttributeError, KeyError, ValueError, TypeError):
            checked = None  # the arm's API is not this module's to assume; the rows say why
    by_id = {str(r["id"]): r for _, r in checked.iterrows()} if checked is not None and "id" in checked else {}
    out = []
    for entry in entries:
        row = by_id.get(str(entry.get("id")))
        if row is None:
            why = (
                "the quality arm did not run in this study"
                if not quality_tables
                else "the quality arm's tables hold no check of this value"
            )
            out.append(_result(entry, PROVINS, "study", "", "n/a", NOT_TESTABLE, why))
            continue
        ours = pd.to_numeric(row.get("ours"), errors="coerce")
        note = "" if _is_blank(row.get("note")) else str(row.get("note"))
        where = f"{row.get('table', '')}.{row.get('column', '')}"
        if not np.isfinite(ours):
            out.append(_result(entry, PROVINS, "study", "real", "n/a", NOT_TESTABLE, note or f"no value in {where}"))
            continue
        obtained = f"{ours:.4g} ({where})"
        reproduced = str(row.get("reproduced")).strip().lower() in ("true", "1", "yes")
        extreme = (entry.get("check") or {}).get("kind") == "row_extreme"
        if reproduced:
            verdict = SAME_DIRECTION if extreme else WITHIN_INTERVAL
            why = note or f"equal to {entry.get('published')} at the decimals the paper printed"
        else:
            verdict, why = DIFFERS, note or f"not equal to {entry.get('published')} at the decimals the paper printed"
        out.append(_result(entry, PROVINS, "study", "real", obtained, verdict, why))
    return out


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, float) and not np.isfinite(value)) or str(value).strip() in ("", "nan")


def results_frame(results: list[ClaimResult]) -> pd.DataFrame:
    """The claim results as a table, in the order they were checked."""
    return pd.DataFrame([r.__dict__ for r in results], columns=list(ClaimResult.__dataclass_fields__))
