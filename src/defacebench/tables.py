"""Study tables: the failure log, complete cases and agreement per cohort, outcome and method.

Design after de Sitter et al. (2020): failures on full and defaced images are
counted and compared (McNemar's exact test); agreement is computed on complete
cases only, i.e. subjects whose analysis succeeded on the full image and on
every defaced variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .io import read_json, write_text
from .records import RECORD_COLUMNS

#: Plain-English meaning of every column of the failure and agreement tables.
COLUMN_DESCRIPTIONS = {
    "outcome": "NBV normalised brain volume; WMLV white-matter lesion volume; GBV tumour core volume; WTV whole tumour incl. oedema",
    "method": "defacing method compared with the full image",
    "backend": "analysis backend(s) that produced the values (a re-implementation says so)",
    "n_subjects": "subjects with a record for this outcome",
    "failed_full": "subjects whose analysis failed on the full image",
    "failed_defaced": "subjects whose analysis failed on the image defaced by this method",
    "both_failed": "subjects failing on both",
    "mcnemar_b": "failed on the full image only",
    "mcnemar_c": "failed on the defaced image only",
    "mcnemar_p": "McNemar exact two-sided p value for a difference in failure rates",
    "failure_reasons": "failed stage: count, over the defaced images",
    "n_complete": "complete cases: subjects whose analysis succeeded on the full image and on every defaced variant",
    "mean_full": "mean value on the full images (ml)",
    "sd_full": "standard deviation on the full images (ml)",
    "mean_defaced": "mean value on the defaced images (ml)",
    "sd_defaced": "standard deviation on the defaced images (ml)",
    "mean_diff": "mean of defaced minus full (ml)",
    "diff_ci_low": "lower bound of the 95 % CI of the mean difference (ml)",
    "diff_ci_high": "upper bound of the 95 % CI of the mean difference (ml)",
    "icc_a1": "ICC(A,1): intraclass correlation, two-way, absolute agreement, single measures (McGraw & Wong 1996)",
    "icc_a1_ci_low": "lower bound of the 95 % CI of ICC(A,1)",
    "icc_a1_ci_high": "upper bound of the 95 % CI of ICC(A,1)",
    "t": "paired t statistic (defaced minus full)",
    "t_df": "degrees of freedom of the paired t test",
    "t_p": "two-sided p value of the paired t test",
    "ba_bias": "Bland-Altman bias: mean of defaced minus full (ml)",
    "ba_loa_low": "Bland-Altman lower 95 % limit of agreement (ml)",
    "ba_loa_high": "Bland-Altman upper 95 % limit of agreement (ml)",
    "wilcoxon_W": "Wilcoxon signed-rank statistic",
    "wilcoxon_p": "two-sided p value of the Wilcoxon signed-rank test",
    "mape_full_vs_truth_pct": "mean absolute error of the full-image values against the simulated truth (% of truth)",
    "mape_defaced_vs_truth_pct": "mean absolute error of the defaced-image values against the simulated truth (% of truth)",
    "note": "why a statistic is missing (too few complete cases, constant data)",
}

FAILURE_COLUMNS = ("outcome", "method", "backend", "n_subjects", "failed_full", "failed_defaced", "both_failed",
                   "mcnemar_b", "mcnemar_c", "mcnemar_p", "failure_reasons")
AGREEMENT_COLUMNS = ("outcome", "method", "backend", "n_complete", "mean_full", "sd_full", "mean_defaced",
                     "sd_defaced", "mean_diff", "diff_ci_low", "diff_ci_high", "icc_a1", "icc_a1_ci_low",
                     "icc_a1_ci_high", "t", "t_df", "t_p", "ba_bias", "ba_loa_low", "ba_loa_high", "wilcoxon_W",
                     "wilcoxon_p", "mape_full_vs_truth_pct", "mape_defaced_vs_truth_pct", "note")


def load_records(paths) -> pd.DataFrame:
    """All records from the analysis JSON files (each a list of records), one row per record."""
    rows = []
    for path in paths:
        content = read_json(path)
        for record in content if isinstance(content, list) else [content]:
            row = dict(record)
            for key in ("details", "tool_versions"):
                row[key] = json.dumps(row.get(key) or {}, sort_keys=True)
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    df["subject"] = df["subject"].astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["truth"] = pd.to_numeric(df["truth"], errors="coerce")
    return df


def read_records_tsv(path) -> pd.DataFrame:
    """Read a ``<cohort>_records.tsv`` back (subject labels stay strings: ``001`` is not 1)."""
    return pd.read_csv(path, sep="\t", dtype={"subject": str, "cohort": str})


def _methods(df: pd.DataFrame) -> list[str]:
    return sorted(v for v in df["variant"].unique() if v != "none")


def complete_cases(df: pd.DataFrame, outcome: str, cohort: str | None = None) -> list[str]:
    """Subjects whose ``outcome`` succeeded on every variant present (full image and each method).

    de Sitter et al. (2020) kept only cases in which all analyses succeeded, so
    every method is compared with the full image on the same subjects.
    """
    sub = df[df["outcome"] == outcome]
    if cohort is not None:
        sub = sub[sub["cohort"] == cohort]
    variants = set(sub["variant"])
    good = []
    for subject, group in sub.groupby("subject"):
        ok = set(group.loc[group["status"] == "ok", "variant"])
        if ok == variants and group["value"].notna().all():
            good.append(subject)
    return sorted(good)


def _backend(group: pd.DataFrame) -> str:
    return "; ".join(sorted({str(b) for b in group["backend"].dropna() if str(b)}))


def failure_table(df: pd.DataFrame, cohort: str | None = None) -> pd.DataFrame:
    """Failures on full versus defaced images per outcome and method (McNemar's exact test)."""
    if cohort is not None:
        df = df[df["cohort"] == cohort]
    rows = []
    for outcome in sorted(df["outcome"].unique()):
        sub = df[df["outcome"] == outcome]
        full = sub[sub["variant"] == "none"].set_index("subject")
        for method in _methods(sub):
            defaced = sub[sub["variant"] == method].set_index("subject")
            subjects = sorted(set(full.index) & set(defaced.index))
            failed_full = (full.loc[subjects, "status"] != "ok").to_numpy()
            failed_defaced = (defaced.loc[subjects, "status"] != "ok").to_numpy()
            test = stats.mcnemar_exact(failed_full, failed_defaced)
            reasons = defaced.loc[defaced["status"] != "ok", "failed_stage"].value_counts()
            rows.append({
                "outcome": outcome, "method": method,
                "backend": _backend(pd.concat([full, defaced])),
                "n_subjects": len(subjects),
                "failed_full": int(failed_full.sum()), "failed_defaced": int(failed_defaced.sum()),
                "both_failed": int((failed_full & failed_defaced).sum()),
                "mcnemar_b": test["b"], "mcnemar_c": test["c"], "mcnemar_p": test["pval"],
                "failure_reasons": "; ".join(f"{stage}: {n}" for stage, n in reasons.items()),
            })
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


def _mape(values: np.ndarray, truth: np.ndarray) -> float:
    keep = np.isfinite(truth) & (truth != 0)
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(values[keep] - truth[keep]) / np.abs(truth[keep])) * 100)


def agreement_table(df: pd.DataFrame, cohort: str | None = None) -> pd.DataFrame:
    """Agreement of each method with the full image over complete cases, per outcome."""
    if cohort is not None:
        df = df[df["cohort"] == cohort]
    rows = []
    for outcome in sorted(df["outcome"].unique()):
        sub = df[df["outcome"] == outcome]
        subjects = complete_cases(sub, outcome)
        full = sub[sub["variant"] == "none"].set_index("subject").reindex(subjects)
        for method in _methods(sub):
            defaced = sub[sub["variant"] == method].set_index("subject").reindex(subjects)
            x, y = full["value"].to_numpy(float), defaced["value"].to_numpy(float)
            truth = full["truth"].to_numpy(float)
            icc = stats.icc(x, y, "ICC(A,1)")
            t = stats.paired_t(x, y)
            ba = stats.bland_altman(x, y)
            w = stats.wilcoxon(x, y)
            notes = sorted({r["note"] for r in (icc, t, ba, w) if r.get("note")})
            rows.append({
                "outcome": outcome, "method": method,
                "backend": _backend(pd.concat([full, defaced])),
                "n_complete": len(subjects),
                "mean_full": float(np.mean(x)) if len(x) else np.nan,
                "sd_full": float(np.std(x, ddof=1)) if len(x) > 1 else np.nan,
                "mean_defaced": float(np.mean(y)) if len(y) else np.nan,
                "sd_defaced": float(np.std(y, ddof=1)) if len(y) > 1 else np.nan,
                "mean_diff": t["mean_diff"], "diff_ci_low": t["ci_low"], "diff_ci_high": t["ci_high"],
                "icc_a1": icc["icc"], "icc_a1_ci_low": icc["ci_low"], "icc_a1_ci_high": icc["ci_high"],
                "t": t["t"], "t_df": t["df"], "t_p": t["pval"],
                "ba_bias": ba["bias"], "ba_loa_low": ba["loa_low"], "ba_loa_high": ba["loa_high"],
                "wilcoxon_W": w["statistic"], "wilcoxon_p": w["pval"],
                "mape_full_vs_truth_pct": _mape(x, truth), "mape_defaced_vs_truth_pct": _mape(y, truth),
                "note": "; ".join(notes),
            })
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _provenance(df: pd.DataFrame) -> list[str]:
    lines = [f"- backends: {_backend(df) or 'n/a'}"]
    versions = {}
    for text in df["tool_versions"].dropna().unique():
        for tool, version in json.loads(text).items():
            versions.setdefault(tool, set()).add(str(version))
    if versions:
        lines.append("- tool versions: " + ", ".join(f"{t} {'/'.join(sorted(v))}" for t, v in sorted(versions.items())))
    return lines


def to_markdown(table: pd.DataFrame, title: str, records: pd.DataFrame | None = None) -> str:
    """A Markdown table with a legend of its columns and provenance lines."""
    body = table.to_markdown(index=False, floatfmt=".4g") if not table.empty else "(no rows)"
    lines = [f"# {title}", "", body, "", "## Columns", ""]
    lines += [f"- `{c}`: {COLUMN_DESCRIPTIONS[c]}" for c in table.columns if c in COLUMN_DESCRIPTIONS]
    if records is not None and not records.empty:
        lines += ["", "## Provenance", ""] + _provenance(records)
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, out_dir: str | Path, cohort: str) -> None:
    """Write the records, failure and agreement tables of ``cohort`` as TSV and Markdown."""
    out_dir = Path(out_dir)
    df = df[df["cohort"] == cohort]
    write_text(df.to_csv(sep="\t", index=False, na_rep="n/a"), out_dir / f"{cohort}_records.tsv")
    failures = failure_table(df)
    agreement = agreement_table(df)
    write_text(failures.to_csv(sep="\t", index=False, na_rep="n/a"), out_dir / f"{cohort}_failures.tsv")
    write_text(to_markdown(failures, f"Analysis failures: cohort {cohort}", df), out_dir / f"{cohort}_failures.md")
    write_text(agreement.to_csv(sep="\t", index=False, na_rep="n/a"), out_dir / f"{cohort}_agreement.tsv")
    write_text(
        to_markdown(agreement, f"Agreement of defaced with full images (complete cases): cohort {cohort}", df),
        out_dir / f"{cohort}_agreement.md",
    )


def summary_text(df: pd.DataFrame) -> str:
    """A few lines per cohort, outcome and method for the end of a run."""
    if df.empty:
        return "no records"
    lines = []
    for cohort in sorted(df["cohort"].unique()):
        sub = df[df["cohort"] == cohort]
        failures = failure_table(sub).set_index(["outcome", "method"])
        agreement = agreement_table(sub).set_index(["outcome", "method"])
        lines.append(f"Cohort {cohort} ({sub['subject'].nunique()} subjects):")
        for (outcome, method), row in agreement.iterrows():
            f = failures.loc[(outcome, method)]
            lines.append(
                f"  {outcome:<4} {method:<12} n={row.n_complete:<3} failures full/defaced "
                f"{f.failed_full}/{f.failed_defaced} (McNemar p={f.mcnemar_p:.2g}); ICC(A,1)={row.icc_a1:.3f} "
                f"[{row.icc_a1_ci_low:.3f}, {row.icc_a1_ci_high:.3f}]; mean diff {row.mean_diff:+.1f} ml "
                f"(paired t p={row.t_p:.2g})"
            )
    return "\n".join(lines)


def plot_agreement(df: pd.DataFrame, out_png: str | Path, cohort: str) -> None:
    """Bland-Altman plots, one panel per outcome and method, over complete cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import _atomic_target
    import os

    df = df[df["cohort"] == cohort]
    panels = [(o, m) for o in sorted(df["outcome"].unique()) for m in _methods(df[df["outcome"] == o])]
    ncols = max(1, len({m for _, m in panels}))
    nrows = max(1, len({o for o, _ in panels}))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    outcomes = sorted({o for o, _ in panels})
    methods = sorted({m for _, m in panels})
    for outcome, method in panels:
        ax = axes[outcomes.index(outcome), methods.index(method)]
        ax.set_visible(True)
        sub = df[df["outcome"] == outcome]
        subjects = complete_cases(sub, outcome)
        full = sub[sub["variant"] == "none"].set_index("subject").reindex(subjects)["value"].to_numpy(float)
        defaced = sub[sub["variant"] == method].set_index("subject").reindex(subjects)["value"].to_numpy(float)
        mean, diff = (full + defaced) / 2, defaced - full
        ax.scatter(mean, diff, s=14, color="tab:blue")
        ba = stats.bland_altman(full, defaced)
        for y, style in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
            if np.isfinite(y):
                ax.axhline(y, color="tab:red", linestyle=style, linewidth=1)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_title(f"{outcome}: {method} (n={len(subjects)})", fontsize=9)
        ax.set_xlabel("mean of full and defaced (ml)", fontsize=8)
        ax.set_ylabel("defaced - full (ml)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Bland-Altman agreement, cohort {cohort} (bias solid, 95 % limits dashed)", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = _atomic_target(out_png)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
