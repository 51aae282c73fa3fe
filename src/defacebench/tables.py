"""Study tables: the failure log, complete cases and agreement per cohort, outcome and method.

Design after de Sitter et al. (2020), Eur Radiol 30:1062: failures on the full
and the defaced images are counted and compared (McNemar's exact test), and
agreement with the full image is computed on complete cases only.

Complete-case rule (:func:`complete_cases`): within one cohort and outcome, a
subject is a complete case when the analysis succeeded (status ``ok`` and a
finite value) on EVERY variant present for that cohort and outcome, the full
image (``none``) and each defacing method. A subject with a single failure, or
with a variant missing, is left out of the agreement of every method for that
outcome, so all methods are compared with the full image on the same subjects.
The failure table still counts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .io import atomic_path, read_json, write_text
from .records import RECORD_COLUMNS

#: Variant name of the full (not defaced) image.
FULL = "none"

#: Outcomes in the order of de Sitter et al. (brain, lesion, tumour); others follow alphabetically.
OUTCOME_ORDER = ("NBV", "WMLV", "GBV", "WTV")

#: Plain-English meaning of every column of the failure and agreement tables.
COLUMN_DESCRIPTIONS = {
    "outcome": "NBV normalised brain volume; WMLV white-matter lesion volume; GBV tumour core volume; WTV whole tumour incl. oedema",
    "method": "defacing method compared with the full image",
    "backend": "analysis backend(s) that produced the values (a re-implementation says so)",
    "n_subjects": "subjects with a record on both the full image and the image defaced by this method",
    "failed_full": "subjects whose analysis failed on the full image",
    "failed_defaced": "subjects whose analysis failed on the image defaced by this method",
    "both_failed": "subjects failing on both",
    "mcnemar_b": "failed on the full image only",
    "mcnemar_c": "failed on the defaced image only",
    "mcnemar_p": "McNemar exact two-sided p value for a difference in failure rates (1 when b + c = 0)",
    "failure_reasons": "failed stage: count, over the images defaced by this method",
    "failure_reasons_full": "failed stage: count, over the full images",
    "n_complete": "complete cases: subjects whose analysis succeeded on the full image and on every defaced variant",
    "mean_full": "mean value on the full images (ml)",
    "sd_full": "standard deviation on the full images (ml)",
    "mean_defaced": "mean value on the defaced images (ml)",
    "sd_defaced": "standard deviation on the defaced images (ml)",
    "mean_diff": "mean of defaced minus full (ml)",
    "diff_ci_low": "lower bound of the 95 % CI of the mean difference (ml)",
    "diff_ci_high": "upper bound of the 95 % CI of the mean difference (ml)",
    "icc_a1": "ICC(A,1): intraclass correlation, two-way, absolute agreement, single measures (McGraw & Wong 1996); 1 = identical",
    "icc_a1_ci_low": "lower bound of the 95 % CI of ICC(A,1)",
    "icc_a1_ci_high": "upper bound of the 95 % CI of ICC(A,1)",
    "t": "paired t statistic (defaced minus full)",
    "t_df": "degrees of freedom of the paired t test",
    "t_p": "two-sided p value of the paired t test",
    "ba_bias": "Bland-Altman bias: mean of defaced minus full (ml)",
    "ba_loa_low": "Bland-Altman lower 95 % limit of agreement, bias - 1.96 SD (ml)",
    "ba_loa_high": "Bland-Altman upper 95 % limit of agreement, bias + 1.96 SD (ml)",
    "wilcoxon_W": "Wilcoxon signed-rank statistic (smaller rank sum; zero differences discarded)",
    "wilcoxon_p": "two-sided p value of the Wilcoxon signed-rank test",
    "mape_full_vs_truth_pct": "mean absolute error of the full-image values against the simulated truth (% of truth)",
    "mape_defaced_vs_truth_pct": "mean absolute error of the defaced-image values against the simulated truth (% of truth)",
    "note": "why a statistic is missing, special or not interpretable (fewer than 5 complete cases, constant data, "
    "identical values)",
}

FAILURE_COLUMNS = (
    "outcome",
    "method",
    "backend",
    "n_subjects",
    "failed_full",
    "failed_defaced",
    "both_failed",
    "mcnemar_b",
    "mcnemar_c",
    "mcnemar_p",
    "failure_reasons",
    "failure_reasons_full",
)
AGREEMENT_COLUMNS = (
    "outcome",
    "method",
    "backend",
    "n_complete",
    "mean_full",
    "sd_full",
    "mean_defaced",
    "sd_defaced",
    "mean_diff",
    "diff_ci_low",
    "diff_ci_high",
    "icc_a1",
    "icc_a1_ci_low",
    "icc_a1_ci_high",
    "t",
    "t_df",
    "t_p",
    "ba_bias",
    "ba_loa_low",
    "ba_loa_high",
    "wilcoxon_W",
    "wilcoxon_p",
    "mape_full_vs_truth_pct",
    "mape_defaced_vs_truth_pct",
    "note",
)

#: Fewer complete cases (or subjects) than this and a statistic is flagged as not interpretable.
MIN_INTERPRETABLE_N = 5

#: Level at which the summary lists a difference between defaced and full images as a finding.
FINDING_ALPHA = 0.05

COMPLETE_CASE_RULE = (
    "Complete cases: within a cohort and outcome, subjects whose analysis succeeded (status ok, finite value) "
    "on every variant present, the full image and every defacing method. A subject with any failure is left out "
    "of the agreement of every method for that outcome (de Sitter et al. 2020); the failure table still counts it."
)


# --------------------------------------------------------------------------- records


def load_records(paths) -> pd.DataFrame:
    """All records from the analysis JSON files (each a list of record dicts), one row per record.

    ``details`` and ``tool_versions`` are kept as JSON strings, ``value`` and
    ``truth`` become floats (NaN when null), ``subject`` stays a string.
    """
    rows = []
    for path in paths:
        content = read_json(path)
        for record in content if isinstance(content, list) else [content]:
            row = dict(record)
            for key in ("details", "tool_versions"):
                row[key] = json.dumps(row.get(key) or {}, sort_keys=True)
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    for key in ("cohort", "subject", "variant", "outcome"):
        df[key] = df[key].astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    df["truth"] = pd.to_numeric(df["truth"], errors="coerce").astype(float)
    return df


def read_records_tsv(path) -> pd.DataFrame:
    """Read a ``<cohort>_records.tsv`` back (subject labels stay strings: ``001`` is not 1)."""
    return pd.read_csv(path, sep="\t", dtype={"subject": str, "cohort": str, "variant": str, "outcome": str})


def succeeded(df: pd.DataFrame) -> pd.Series:
    """True for records whose analysis succeeded: status ``ok`` and a finite value."""
    return (df["status"] == "ok") & np.isfinite(df["value"].astype(float))


def _for_cohort(df: pd.DataFrame, cohort: str | None) -> pd.DataFrame:
    """The records of one cohort; without a cohort the records must hold only one
    (subject labels are only unique within a cohort)."""
    if cohort is not None:
        return df[df["cohort"] == cohort]
    cohorts = sorted(df["cohort"].dropna().unique())
    if len(cohorts) > 1:
        raise ValueError(f"records hold several cohorts {cohorts}; pass cohort=")
    return df


def _check_unique(df: pd.DataFrame) -> None:
    """One record per cohort, subject, variant and outcome; anything else is a workflow bug."""
    key = ["cohort", "subject", "variant", "outcome"]
    duplicated = df[df.duplicated(key, keep=False)]
    if not duplicated.empty:
        first = duplicated[key].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"{len(duplicated)} records share cohort/subject/variant/outcome, e.g. {first}")


def _outcomes(df: pd.DataFrame) -> list[str]:
    present = set(df["outcome"].dropna())
    return [o for o in OUTCOME_ORDER if o in present] + sorted(present - set(OUTCOME_ORDER))


def _methods(df: pd.DataFrame) -> list[str]:
    return sorted(v for v in df["variant"].dropna().unique() if v != FULL)


def _backend(group: pd.DataFrame) -> str:
    return "; ".join(sorted({str(b) for b in group["backend"].dropna() if str(b)}))


def _by_subject(df: pd.DataFrame, variant: str) -> pd.DataFrame:
    return df[df["variant"] == variant].set_index("subject")


# --------------------------------------------------------------------------- complete cases


def complete_cases(df: pd.DataFrame, outcome: str, cohort: str | None = None) -> list[str]:
    """Subjects for which ``outcome`` succeeded on every variant present for that cohort and outcome.

    The variants are those with at least one record for the cohort and outcome
    (the full image ``none`` and each defacing method). A subject is kept only
    when it has a record for each of them, each with status ``ok`` and a finite
    value: de Sitter et al. (2020) kept only cases in which all analyses
    succeeded, so every method is compared with the full image on the same
    subjects. Returns sorted subject labels.
    """
    sub = _for_cohort(df, cohort)
    sub = sub[sub["outcome"] == outcome]
    variants = set(sub["variant"])
    ok = sub[succeeded(sub)]
    good_variants = ok.groupby("subject")["variant"].agg(set)
    return sorted(subject for subject, have in good_variants.items() if have == variants)


# --------------------------------------------------------------------------- failure table


def _reasons(failed: pd.DataFrame) -> str:
    """``stage: count`` over failed records, most frequent first (``no value`` when ok but empty)."""
    stages = failed["failed_stage"].fillna("").astype(str)
    stages = stages.where(stages != "", np.where(failed["status"] == "ok", "no value", "unspecified"))
    counts = stages.value_counts()
    return "; ".join(f"{stage}: {n}" for stage, n in counts.items())


def failure_table(df: pd.DataFrame, cohort: str | None = None) -> pd.DataFrame:
    """Failures on full versus defaced images per outcome and method, with McNemar's exact test.

    A record counts as failed when :func:`succeeded` is false. Subjects are
    paired over those with a record on both the full and the defaced image.
    """
    df = _for_cohort(df, cohort)
    _check_unique(df)
    rows = []
    for outcome in _outcomes(df):
        sub = df[df["outcome"] == outcome].assign(failed=lambda d: ~succeeded(d))
        full = _by_subject(sub, FULL)
        for method in _methods(sub):
            defaced = _by_subject(sub, method)
            subjects = sorted(set(full.index) & set(defaced.index))
            failed_full = full.loc[subjects, "failed"].to_numpy(bool)
            failed_defaced = defaced.loc[subjects, "failed"].to_numpy(bool)
            test = stats.mcnemar_exact(failed_full, failed_defaced)
            rows.append(
                {
                    "outcome": outcome,
                    "method": method,
                    "backend": _backend(pd.concat([full.loc[subjects], defaced.loc[subjects]])),
                    "n_subjects": len(subjects),
                    "failed_full": int(failed_full.sum()),
                    "failed_defaced": int(failed_defaced.sum()),
                    "both_failed": int((failed_full & failed_defaced).sum()),
                    "mcnemar_b": test["b"],
                    "mcnemar_c": test["c"],
                    "mcnemar_p": test["pval"],
                    "failure_reasons": _reasons(defaced.loc[subjects][failed_defaced]),
                    "failure_reasons_full": _reasons(full.loc[subjects][failed_full]),
                }
            )
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


# --------------------------------------------------------------------------- agreement table


def mean_abs_pct_error(values, truth) -> float:
    """Mean absolute error of ``values`` against ``truth``, in % of truth (pairs with truth 0 or NaN skipped)."""
    values, truth = np.asarray(values, float), np.asarray(truth, float)
    keep = np.isfinite(values) & np.isfinite(truth) & (truth != 0)
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(values[keep] - truth[keep]) / np.abs(truth[keep])) * 100)


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def small_n_flag(n: int) -> str:
    """``"n = 3 < 5: not interpretable"`` below :data:`MIN_INTERPRETABLE_N` cases, else ``""``."""
    return f"n = {n} < {MIN_INTERPRETABLE_N}: not interpretable" if n < MIN_INTERPRETABLE_N else ""


def agreement_row(full: np.ndarray, defaced: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """All agreement statistics of one method against the full image on paired complete cases.

    Below :data:`MIN_INTERPRETABLE_N` complete cases the statistics are still
    computed, and the note says they are not interpretable.
    """
    full, defaced = np.asarray(full, float), np.asarray(defaced, float)
    truth = np.full(full.shape, np.nan) if truth is None else np.asarray(truth, float)
    icc = stats.icc(full, defaced, "ICC(A,1)")
    t = stats.paired_t(full, defaced)
    ba = stats.bland_altman(full, defaced)
    w = stats.wilcoxon(full, defaced)
    notes = [flag] if (flag := small_n_flag(int(full.size))) else []
    for name, result in (("ICC", icc), ("t", t), ("Bland-Altman", ba), ("Wilcoxon", w)):
        if result.get("note"):
            notes.append(f"{name}: {result['note']}")
    return {
        "n_complete": int(full.size),
        "mean_full": _mean(full),
        "sd_full": _sd(full),
        "mean_defaced": _mean(defaced),
        "sd_defaced": _sd(defaced),
        "mean_diff": t["mean_diff"],
        "diff_ci_low": t["ci_low"],
        "diff_ci_high": t["ci_high"],
        "icc_a1": icc["icc"],
        "icc_a1_ci_low": icc["ci_low"],
        "icc_a1_ci_high": icc["ci_high"],
        "t": t["t"],
        "t_df": t["df"],
        "t_p": t["pval"],
        "ba_bias": ba["bias"],
        "ba_loa_low": ba["loa_low"],
        "ba_loa_high": ba["loa_high"],
        "wilcoxon_W": w["statistic"],
        "wilcoxon_p": w["pval"],
        "mape_full_vs_truth_pct": mean_abs_pct_error(full, truth),
        "mape_defaced_vs_truth_pct": mean_abs_pct_error(defaced, truth),
        "note": "; ".join(notes),
    }


def paired_values(df: pd.DataFrame, outcome: str, method: str, cohort: str | None = None):
    """Complete-case values ``(subjects, full, defaced, truth)`` of one outcome and method."""
    sub = _for_cohort(df, cohort)
    sub = sub[sub["outcome"] == outcome]
    subjects = complete_cases(sub, outcome)
    full = _by_subject(sub, FULL).reindex(subjects)
    defaced = _by_subject(sub, method).reindex(subjects)
    truth = full["truth"].to_numpy(float)
    return subjects, full["value"].to_numpy(float), defaced["value"].to_numpy(float), truth


def agreement_table(df: pd.DataFrame, cohort: str | None = None) -> pd.DataFrame:
    """Agreement of each method with the full image over complete cases, per outcome.

    ICC(A,1) with 95 % CI (McGraw & Wong 1996), paired t test, Bland-Altman
    bias and limits (Bland & Altman 1986), Wilcoxon signed-rank test, and, when
    the records carry a simulated truth, the mean absolute % error of each side.
    """
    df = _for_cohort(df, cohort)
    _check_unique(df)
    rows = []
    for outcome in _outcomes(df):
        sub = df[df["outcome"] == outcome]
        for method in _methods(sub):
            subjects, full, defaced, truth = paired_values(sub, outcome, method)
            used = sub[sub["subject"].isin(subjects) & sub["variant"].isin([FULL, method])]
            backend = _backend(used) or _backend(sub[sub["variant"].isin([FULL, method])])
            rows.append(
                {"outcome": outcome, "method": method, "backend": backend, **agreement_row(full, defaced, truth)}
            )
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


# --------------------------------------------------------------------------- output


def _tool_versions(df: pd.DataFrame) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for text in df["tool_versions"].dropna().unique():
        try:
            entries = json.loads(text) if isinstance(text, str) else dict(text)
        except (TypeError, ValueError):
            continue
        for tool, version in entries.items():
            versions.setdefault(tool, set()).add(str(version))
    return versions


def _provenance(df: pd.DataFrame) -> list[str]:
    lines = [
        f"- records: {len(df)} ({int(succeeded(df).sum())} ok), subjects: {df['subject'].nunique()}",
        f"- backends: {_backend(df) or 'n/a'}",
    ]
    versions = _tool_versions(df)
    if versions:
        lines.append("- tool versions: " + ", ".join(f"{t} {'/'.join(sorted(v))}" for t, v in sorted(versions.items())))
    return lines


def _complete_case_lines(df: pd.DataFrame) -> list[str]:
    lines = [COMPLETE_CASE_RULE, ""]
    for outcome in _outcomes(df):
        sub = df[df["outcome"] == outcome]
        subjects = sorted(sub["subject"].unique())
        kept = set(complete_cases(sub, outcome))
        excluded = [s for s in subjects if s not in kept]
        flag = small_n_flag(len(kept))
        lines.append(
            f"- {outcome}: {len(kept)} of {len(subjects)} subjects"
            + (f" (excluded: {', '.join(excluded)})" if excluded else "")
            + (f" ({flag}; so flagged in `note`)" if flag else "")
        )
    return lines


def to_markdown(
    table: pd.DataFrame, title: str, records: pd.DataFrame | None = None, preamble: list[str] | None = None
) -> str:
    """A Markdown table with a legend of its columns (:data:`COLUMN_DESCRIPTIONS`) and provenance lines."""
    body = table.to_markdown(index=False, floatfmt=".4g") if not table.empty else "(no rows)"
    lines = [f"# {title}", ""] + (list(preamble) + [""] if preamble else []) + [body, "", "## Columns", ""]
    lines += [f"- `{c}`: {COLUMN_DESCRIPTIONS[c]}" for c in table.columns if c in COLUMN_DESCRIPTIONS]
    if records is not None and not records.empty:
        lines += ["", "## Provenance", ""] + _provenance(records)
    return "\n".join(lines) + "\n"


def _tsv(table: pd.DataFrame) -> str:
    return table.to_csv(sep="\t", index=False, na_rep="n/a")


def write_tables(df: pd.DataFrame, out_dir: str | Path, cohort: str) -> dict[str, Path]:
    """Write the records, failure and agreement tables of ``cohort`` as TSV and Markdown (atomically).

    Files: ``<cohort>_records.tsv`` (long table of all records),
    ``<cohort>_failures.tsv/.md`` and ``<cohort>_agreement.tsv/.md``. Returns
    the paths by name (``records``, ``failures_tsv``, ...).
    """
    out_dir = Path(out_dir)
    df = _for_cohort(df, cohort)
    failures = failure_table(df)
    agreement = agreement_table(df)
    paths = {
        "records": write_text(_tsv(df), out_dir / f"{cohort}_records.tsv"),
        "failures_tsv": write_text(_tsv(failures), out_dir / f"{cohort}_failures.tsv"),
        "failures_md": write_text(
            to_markdown(
                failures,
                f"Analysis failures: cohort {cohort}",
                df,
                [
                    "Failures on the full image and on each defaced image, paired by subject; "
                    "McNemar's exact test compares the failure rates (McNemar 1947)."
                ],
            ),
            out_dir / f"{cohort}_failures.md",
        ),
        "agreement_tsv": write_text(_tsv(agreement), out_dir / f"{cohort}_agreement.tsv"),
        "agreement_md": write_text(
            to_markdown(
                agreement,
                f"Agreement of defaced with full images (complete cases): cohort {cohort}",
                df,
                _complete_case_lines(df),
            ),
            out_dir / f"{cohort}_agreement.md",
        ),
    }
    return paths


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def _p_value(value) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def findings(df: pd.DataFrame) -> list[str]:
    """The differences between defaced and full images that are significant, one line each, with their n.

    A finding: a paired t test or Wilcoxon test of the values (n = complete
    cases), or McNemar's test of the failure rates (n = subjects), with p below
    :data:`FINDING_ALPHA` (uncorrected for the number of tests) on at least
    :data:`MIN_INTERPRETABLE_N` cases.
    """
    lines = []
    for cohort in sorted(df["cohort"].unique()):
        sub = df[df["cohort"] == cohort]
        failures = failure_table(sub).set_index(["outcome", "method"])
        for (outcome, method), row in agreement_table(sub).set_index(["outcome", "method"]).iterrows():
            found = []
            n = int(row.n_complete)
            tests = (("paired t", row.t_p), ("Wilcoxon", row.wilcoxon_p))
            if n >= MIN_INTERPRETABLE_N and any(_p_value(p) < FINDING_ALPHA for _, p in tests):
                found.append(
                    f"mean diff {_fmt(row.mean_diff, '+.2f')} ml [{_fmt(row.diff_ci_low, '+.2f')}, "
                    f"{_fmt(row.diff_ci_high, '+.2f')}] (n={n}; paired t p={_fmt(row.t_p, '.2g')}, "
                    f"Wilcoxon p={_fmt(row.wilcoxon_p, '.2g')})"
                )
            f = failures.loc[(outcome, method)]
            if int(f.n_subjects) >= MIN_INTERPRETABLE_N and _p_value(f.mcnemar_p) < FINDING_ALPHA:
                found.append(
                    f"failures full/defaced {f.failed_full}/{f.failed_defaced} of {f.n_subjects} "
                    f"(n={f.n_subjects}; McNemar p={_fmt(f.mcnemar_p, '.2g')})"
                )
            lines += [f"  {cohort} {outcome} {method}: {text}" for text in found]
    return lines


def summary_text(df: pd.DataFrame) -> str:
    """The end-of-run summary: the significant findings first (:func:`findings`), then a line per cohort,
    outcome and method: complete cases, failures, ICC(A,1) [95 % CI], mean difference and paired t p value.

    Every statistic carries its n; fewer than :data:`MIN_INTERPRETABLE_N`
    cases are flagged (:func:`small_n_flag`) ahead of the numbers.
    """
    if df.empty:
        return "no records"
    found = findings(df)
    lines = [
        f"Findings: differences between defaced and full images with p < {FINDING_ALPHA:g} "
        f"(uncorrected) on n >= {MIN_INTERPRETABLE_N}:"
    ]
    lines += found or ["  none"]
    lines.append("")
    for cohort in sorted(df["cohort"].unique()):
        sub = df[df["cohort"] == cohort]
        failures = failure_table(sub).set_index(["outcome", "method"])
        agreement = agreement_table(sub).set_index(["outcome", "method"])
        lines.append(f"Cohort {cohort} ({sub['subject'].nunique()} subjects):")
        for (outcome, method), row in agreement.iterrows():
            f = failures.loc[(outcome, method)]
            n = int(row.n_complete)
            # McNemar's n is the subjects, the other statistics' the complete cases
            flag = small_n_flag(min(n, int(f.n_subjects)))
            lines.append(
                f"  {outcome:<4} {method:<12} n={n} complete of {f.n_subjects} subjects"
                + (f" [{flag}]" if flag else "")
                + f": failures full/defaced {f.failed_full}/{f.failed_defaced} (McNemar p={_fmt(f.mcnemar_p, '.2g')}); "
                f"ICC(A,1)={_fmt(row.icc_a1, '.3f')} [{_fmt(row.icc_a1_ci_low, '.3f')}, "
                f"{_fmt(row.icc_a1_ci_high, '.3f')}]; mean diff {_fmt(row.mean_diff, '+.2f')} ml "
                f"(paired t p={_fmt(row.t_p, '.2g')})"
            )
    return "\n".join(lines)


def bland_altman_panel(
    ax, full: np.ndarray, defaced: np.ndarray, title: str, unit: str, colour: str = "tab:blue", label_size: int = 8
) -> None:
    """One Bland-Altman panel (Bland & Altman 1986) on ``ax``: defaced minus full against their
    mean, the bias (solid) and 95 % limits of agreement (dashed), zero in grey."""
    ax.scatter((full + defaced) / 2, defaced - full, s=14, color=colour)
    ba = stats.bland_altman(full, defaced)
    for y, style in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
        if np.isfinite(y):
            ax.axhline(y, color="tab:red", linestyle=style, linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"mean of full and defaced ({unit})", fontsize=label_size)
    ax.set_ylabel(f"defaced - full ({unit})", fontsize=label_size)
    ax.tick_params(labelsize=7)


def plot_agreement(df: pd.DataFrame, out_png: str | Path, cohort: str) -> Path:
    """Bland-Altman plots (Bland & Altman 1986), one panel per outcome (row) and method (column),
    over complete cases: defaced minus full against their mean, bias and 95 % limits of agreement.

    Uses a bare matplotlib ``Figure`` (Agg canvas), so no pyplot state or display is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    df = _for_cohort(df, cohort)
    outcomes = _outcomes(df)
    methods = _methods(df)
    panels = [(o, m) for o in outcomes for m in _methods(df[df["outcome"] == o])]
    nrows, ncols = max(1, len(outcomes)), max(1, len(methods))
    fig = Figure(figsize=(3.6 * ncols, 3.2 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    if not panels:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, "no paired records", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for outcome, method in panels:
        ax = axes[outcomes.index(outcome), methods.index(method)]
        ax.set_visible(True)
        subjects, full, defaced, _ = paired_values(df, outcome, method)
        unit = next(iter(df.loc[df["outcome"] == outcome, "unit"].dropna().astype(str)), "") or "ml"
        bland_altman_panel(ax, full, defaced, f"{outcome}: {method} (n={len(subjects)})", unit)
    fig.suptitle(f"Bland-Altman agreement, cohort {cohort} (bias solid, 95 % limits dashed)", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out_png
