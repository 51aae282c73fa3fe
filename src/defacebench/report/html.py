"""The study report: one self-contained HTML document (inline CSS, figures as base64 PNG).

The sections follow issue 22: the study (configuration, cohorts, what actually ran,
tool versions, wall time), failures, agreement, overlap, defacing and privacy,
quality and ratings (when that arm ran), and published versus reproduced. Each
section opens with two or three sentences on what it shows and how to read it.
The file has no external CSS, script or image, so it opens from disk in any
browser and can be sent as an attachment; links to per-subject images are
relative to the report, which sits in the results folder.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..overlap import SOURCE_OUTCOME
from ..tables import AGREEMENT_COLUMNS, FAILURE_COLUMNS, FULL, OUTCOME_ORDER, paired_values
from . import claims as claim_checks
from . import figures
from .data import CohortResults, StudyResults

#: Sections in document order: id -> heading. The browser test checks each id is present.
SECTIONS = {
    "study": "The study",
    "failures": "Failures",
    "agreement": "Agreement with the full image",
    "overlap": "Overlap and accuracy",
    "defacing": "Defacing and privacy",
    "quality": "Quality metrics and ratings",
    "claims": "Published vs reproduced",
}

#: The two or three sentences that open each section: what it shows and how to read it (HTML).
LEADS = {
    "study": (
        "What this run was: the configuration, the cohorts it analysed (simulated cohorts are marked; their "
        "results test the pipeline on synthetic heads, not patients), which backend actually ran each step "
        "(a re-implementation says so in its name), the tool versions the records carry, and the wall time "
        "of each workflow stage from Snakemake's benchmark files."
    ),
    "failures": (
        "How often an analysis failed on the full image and on each defaced image, per outcome and method. "
        "Grey bars are the full images, red the defaced ones; McNemar's exact p (above each pair) tests "
        "whether the failure rates differ on the same subjects, and the table lists why analyses failed "
        "(the failed stage and its count)."
    ),
    "agreement": (
        "How close each outcome on a defaced image is to the same outcome on the full image, over complete "
        "cases (subjects whose analysis succeeded on every variant). ICC(A,1) near 1 means near-identical "
        "values; the paired t test and Bland-Altman bias show a systematic shift. In the plots, points on the "
        "grey identity line (bottom) or on zero (top) mean defacing changed nothing; the dashed lines are the "
        "95 % limits of agreement. The worst-agreeing subjects link to their defaced images and renders."
    ),
    "overlap": (
        "Two equal volumes can lie in different places, so each defaced image's label map is compared voxel by "
        "voxel with the full image's (Dice 1 = the same voxels). For simulated cohorts the full and the defaced "
        "label maps are also compared with the simulated truth: the distance between the two boxes is the "
        "accuracy that defacing cost. Each point is a subject. For a cohort with reference labels (config "
        "<code>reference</code>), each method's accuracy against them follows: does defacing make the result "
        "less right?"
    ),
    "defacing": (
        "What each method did to the head. The montage shows frontal surface renders of the full head and of "
        "each defaced head (the view a re-identification attack starts from); the caption under each says "
        "whether OpenCV's face detector still found a face (red: found on a defaced head). The table and chart "
        "give the fraction of the template face region changed (higher hides more) and of brain voxels changed "
        "(should be 0)."
    ),
    "quality": (
        "Whether defacing changes image quality assessment (Provins et al. 2025): experts' ratings of full and "
        "defaced images (linear mixed model and agreement) and image quality metrics (IQMs) computed on both. "
        "A rating or metric that defacing leaves unchanged shows an effect near zero and high agreement."
    ),
    "claims": (
        "Every published finding this run can check, beside the value this run obtained and a verdict: "
        "<em>same direction</em> (same sign and significant), <em>within the published interval</em>, "
        "<em>differs</em>, or <em>not testable</em> (with why). Verdicts from "
        '<span class="badge sim">simulated</span> cohorts test the pipeline on synthetic heads, not the '
        "paper's patients; with a few subjects a significance test has little power."
    ),
}

#: Config keys the study section shows in its own rows (cohorts get their own table).
SHOWN_CONFIG_KEYS = ("study", "results", "methods", "deface", "method_options", "analysis", "simulation", "cohorts")
#: Subjects per cohort in the render montage; a larger cohort's montage shows the first ones.
MONTAGE_SUBJECTS = 8
#: Worst-agreeing subjects named per outcome and method.
WORST_SUBJECTS = 3
#: Rows of a quality table shown (the TSV has them all).
QUALITY_ROWS = 60

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;line-height:1.45}
header{background:#24384f;color:#fff;padding:1.2em 2em}
header h1{margin:0 0 .3em 0;font-size:1.6em}
header p{margin:.2em 0;color:#dde}
nav{position:sticky;top:0;background:#f3f5f8;border-bottom:1px solid #ccd;padding:.5em 2em;z-index:1}
nav a{margin-right:1.2em;color:#24384f;text-decoration:none;font-weight:600}
main{padding:0 2em 3em 2em;max-width:1300px}
section{border-bottom:1px solid #dde;padding-bottom:1.2em}
h2{margin-top:1.4em;color:#24384f}
h3{margin-bottom:.3em}
p.lead{background:#f7f9fb;border-left:4px solid #5a7fa8;padding:.6em 1em;max-width:60em}
table{border-collapse:collapse;margin:.6em 0 1em 0;font-size:.85em}
th,td{border:1px solid #ccd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wide{min-width:16em}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.badge{display:inline-block;padding:.05em .5em;border-radius:.8em;font-size:.85em;white-space:nowrap}
.v-same{background:#d4f0d4}.v-weak{background:#eef5c8}.v-within{background:#d4e8f7}
.v-differs{background:#f7d4d4}.v-na{background:#e6e6e6}
.sim{background:#fde9c8;color:#7a4a00}
.note{color:#555;font-size:.9em}
details{margin:.4em 0}
div.scroll{overflow-x:auto;max-width:100%}
.alert{background:#fbe3e3;border-left:6px solid #b22222;padding:.6em 1em;max-width:60em;font-weight:600}
header p.alert{color:#222}
"""

VERDICT_CLASS = {
    claim_checks.SAME_DIRECTION: "v-same",
    claim_checks.SAME_DIRECTION_NOT_SIGNIFICANT: "v-weak",
    claim_checks.WITHIN_INTERVAL: "v-within",
    claim_checks.WITHIN_OUR_CI: "v-within",
    claim_checks.DIFFERS: "v-differs",
    claim_checks.NOT_TESTABLE: "v-na",
}


# --------------------------------------------------------------------------- small builders


#: Agreement columns the report leaves to the TSV (spreads and the Wilcoxon statistic), to keep the table readable.
AGREEMENT_HIDDEN = ("sd_full", "sd_defaced", "wilcoxon_W")


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI (no file beside the report needed)."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value, column: str = "") -> str:
    """A cell: p values to 2 significant digits, other floats to 4, missing as n/a."""
    if _is_missing(value) or (isinstance(value, str) and value in ("", "nan")):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(value) < 1e6 and not column.endswith("_p") and "icc" not in column:
            return str(int(value))
        spec = ".2g" if column.endswith("_p") or column in ("p", "pval", "p_value") else ".4g"
        return format(float(value), spec)
    return str(value)


def table_html(df: pd.DataFrame, columns: list[str] | None = None, links: dict | None = None) -> str:
    """An HTML table of ``df``'s ``columns`` (those present), numbers right-aligned.

    ``links`` maps a column to a function of the row giving an ``<a>`` target (or None).
    """
    if df is None or df.empty:
        return '<p class="note">(no rows)</p>'
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for _, row in df.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            text = esc(fmt(value, c))
            target = (links or {}).get(c, lambda r: None)(row)
            if target:
                text = f'<a href="{esc(target)}">{text}</a>'
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            if numeric:
                cells.append(f'<td class="num">{text}</td>')
            else:  # long text gets room, so a wide table scrolls instead of wrapping it one word a line
                cells.append(f'<td class="wide">{text}</td>' if len(text) > 30 else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def section(section_id: str, body: str) -> str:
    """A section: its heading, its lead (:data:`LEADS`), then ``body``."""
    body = body or '<p class="note">No image cohort in this study.</p>'
    return (
        f'<section id="{section_id}" data-section="{section_id}"><h2>{esc(SECTIONS[section_id])}</h2>'
        f'<p class="lead">{LEADS[section_id]}</p>{body}</section>'
    )


def sim_badge(cohort: CohortResults) -> str:
    return ' <span class="badge sim">simulated</span>' if cohort.simulated else ""


def per_cohort(study: StudyResults, draw, missing: str) -> str:
    """A heading per cohort, then what ``draw(cohort)`` returns (HTML parts), or ``missing`` when it returns none."""
    body = []
    for cohort in study.cohorts:
        body.append(f"<h3>Cohort {esc(cohort.name)}{sim_badge(cohort)}</h3>")
        body += draw(cohort) or [f'<p class="note">{esc(missing)}</p>']
    return "".join(body)


class Links:
    """Relative links from the report (in ``out_dir``) to files of the run, only for files that exist."""

    def __init__(self, results: Path, out_dir: Path):
        self.results, self.out_dir = Path(results), Path(out_dir)

    def to(self, *parts: str) -> str | None:
        target = self.results.joinpath(*parts)
        if not target.exists():
            return None
        return Path(os.path.relpath(target.resolve(), self.out_dir.resolve())).as_posix()


# --------------------------------------------------------------------------- the study


def _outcomes(records: pd.DataFrame) -> list[str]:
    present = set(records["outcome"].dropna()) if "outcome" in records else set()
    return [o for o in OUTCOME_ORDER if o in present] + sorted(present - set(OUTCOME_ORDER))


def _methods(records: pd.DataFrame) -> list[str]:
    return sorted(v for v in records["variant"].dropna().unique() if v != FULL) if "variant" in records else []


def _modalities(cohort: CohortResults) -> str:
    found = sorted({m for record in cohort.deface_records for m in (record.get("images") or {})})
    return ", ".join(found) if found else "n/a (no defacing record)"


def _tool_versions(study: StudyResults) -> pd.DataFrame:
    """Tool -> versions seen in the analysis records (``tool_versions``) and the defacing records."""
    seen: dict[str, set] = {}

    def add(versions):
        for tool, version in (versions or {}).items():
            seen.setdefault(str(tool), set()).add(str(version))

    for cohort in study.cohorts:
        records = cohort.table("records")
        for text in records.get("tool_versions", pd.Series(dtype=str)).dropna().unique():
            try:
                add(json.loads(text))
            except ValueError:
                continue
        for record in cohort.deface_records:
            add(record.get("tool_versions"))
    rows = [{"tool": tool, "version(s)": ", ".join(sorted(v))} for tool, v in sorted(seen.items())]
    return pd.DataFrame(rows, columns=["tool", "version(s)"])


def _backends(study: StudyResults) -> pd.DataFrame:
    """Per step, what was configured and what the records say actually ran."""
    rows = []
    deface_config = study.config.get("deface", {}) or {}
    rows.append(
        {
            "step": "brain extraction (defacing preparation)",
            "cohort": "all",
            "configured": deface_config.get("brain_extraction", "deepbet"),
            "ran": _brain_extraction(study),
        }
    )
    for cohort in study.cohorts:
        defacing = cohort.table("defacing")
        if not defacing.empty:
            for method, group in defacing.groupby("method", sort=False):
                rows.append(
                    {
                        "step": f"defacing: {method}",
                        "cohort": cohort.name,
                        "configured": method,
                        "ran": "; ".join(sorted({str(b) for b in group["backend"].dropna()})),
                    }
                )
        records = cohort.table("records")
        analysis_config = study.config.get("analysis", {}) or {}
        for outcome in _outcomes(records):
            backends = sorted(
                {str(b) for b in records.loc[records["outcome"] == outcome, "backend"].dropna() if str(b)}
            )
            rows.append(
                {
                    "step": f"analysis: {outcome}",
                    "cohort": cohort.name,
                    # WTV is read from the GBV arm's label map: its backend is GBV's
                    "configured": (analysis_config.get(SOURCE_OUTCOME.get(outcome, outcome)) or {}).get(
                        "backend", "default"
                    ),
                    "ran": "; ".join(backends) or "n/a (no record)",
                }
            )
    return pd.DataFrame(rows, columns=["step", "cohort", "configured", "ran"])


def _brain_extraction(study: StudyResults) -> str:
    found = set()
    for cohort in study.cohorts:
        for record in cohort.deface_records:
            info = (record.get("preparation") or {}).get("brain_extraction")
            if isinstance(info, dict) and info.get("backend"):
                found.add(str(info["backend"]))
    return "; ".join(sorted(found)) or "n/a (no defacing record)"


def study_section(study: StudyResults) -> str:
    config = study.config
    settings = pd.DataFrame(
        [
            {"setting": "study", "value": config.get("study", "")},
            {"setting": "results folder", "value": str(study.results)},
            {"setting": "defacing methods", "value": ", ".join(study.methods) or "none"},
            {"setting": "defacing options", "value": json.dumps(config.get("deface", {}), sort_keys=True)},
            {"setting": "method options", "value": json.dumps(config.get("method_options", {}), sort_keys=True)},
            {"setting": "analysis", "value": json.dumps(config.get("analysis", {}), sort_keys=True)},
            {"setting": "simulation", "value": json.dumps(config.get("simulation", {}), sort_keys=True)},
        ]
        + [
            {"setting": key, "value": json.dumps(value, sort_keys=True, default=str)}  # other arms' blocks
            for key, value in config.items()
            if key not in SHOWN_CONFIG_KEYS
        ]
    )
    cohort_rows = []
    for c in study.cohorts:
        records = c.table("records")
        cohort_rows.append(
            {
                "cohort": c.name,
                "source": c.source + (f" ({c.kind})" if c.kind else ""),
                "subjects configured": c.n_subjects_configured if c.n_subjects_configured is not None else "all",
                "subjects with records": len(c.subjects),
                "modalities": _modalities(c),
                "outcomes": ", ".join(_outcomes(records)) or ", ".join(map(str, c.outcomes)),
                "records": len(records),
            }
        )
    body = [
        "<h3>Configuration</h3>",
        table_html(settings),
        "<h3>Cohorts</h3>",
        table_html(pd.DataFrame(cohort_rows)),
        "<h3>What actually ran</h3>",
        table_html(_backends(study)),
        "<h3>Tool versions</h3>",
        table_html(_tool_versions(study)),
    ]
    bench = study.benchmarks
    body.append("<h3>Wall time per stage</h3>")
    if bench.empty:
        body.append('<p class="note">No benchmark files were found.</p>')
    else:
        per_stage = (
            bench.groupby("stage")
            .agg(
                jobs=("seconds", "size"),
                total_min=("seconds", lambda s: s.sum() / 60),
                mean_s=("seconds", "mean"),
                max_s=("seconds", "max"),
                max_rss_mb=("max_rss_mb", "max"),
            )
            .reset_index()
        )
        body.append(png_img(figures.runtime_chart(bench), "wall time per stage"))
        body.append(table_html(per_stage.sort_values("total_min", ascending=False)))
        body.append(
            f'<p class="note">Summed over {len(bench)} jobs: {bench["seconds"].sum() / 60:.1f} min of job wall '
            f"time (jobs run in parallel, so the run's elapsed time is shorter).</p>"
        )
    return section("study", "".join(body))


# --------------------------------------------------------------------------- failures


def failures_section(study: StudyResults) -> str:

    def draw(cohort: CohortResults) -> list[str]:
        failures = cohort.table("failures")
        if failures.empty:
            return []
        return [
            png_img(figures.failure_chart(failures, cohort.name), f"failure rates, cohort {cohort.name}"),
            table_html(failures, list(FAILURE_COLUMNS)),
        ]

    return section("failures", per_cohort(study, draw, "No failure table: no analysis ran for this cohort."))


# --------------------------------------------------------------------------- agreement


def worst_subjects(
    records: pd.DataFrame, cohort: str, outcome: str, method: str, n: int = WORST_SUBJECTS
) -> pd.DataFrame:
    """The complete cases whose defaced value differs most from the full one (largest |defaced - full|)."""
    subjects, full, defaced, _ = paired_values(records, outcome, method, cohort)
    if not len(subjects):
        return pd.DataFrame(columns=["subject", "full", "defaced", "difference", "difference_pct"])
    frame = pd.DataFrame({"subject": subjects, "full": full, "defaced": defaced, "difference": defaced - full})
    frame["difference_pct"] = 100 * frame["difference"] / frame["full"].where(frame["full"] != 0)
    return frame.reindex(frame["difference"].abs().sort_values(ascending=False).index).head(n)


def agreement_section(study: StudyResults, links: Links) -> str:

    def draw(cohort: CohortResults) -> list[str]:
        agreement, records = cohort.table("agreement"), cohort.table("records")
        if agreement.empty or records.empty:
            return []
        body = [table_html(agreement, [c for c in AGREEMENT_COLUMNS if c not in AGREEMENT_HIDDEN])]
        for outcome in _outcomes(records):
            methods = _methods(records[records["outcome"] == outcome])
            body.append(f"<h4>{esc(outcome)}</h4>")
            body.append(
                png_img(
                    figures.agreement_figure(records, outcome, methods, cohort.name),
                    f"Bland-Altman and scatter, {outcome}, cohort {cohort.name}",
                )
            )
            worst = []
            for method in methods:
                frame = worst_subjects(records, cohort.name, outcome, method)
                worst += [{"method": method, **row} for row in frame.to_dict("records")]
            if worst:
                frame = pd.DataFrame(worst)
                body.append(
                    f'<p class="note">Worst-agreeing subjects for {esc(outcome)} '
                    f"(largest |defaced - full| per method, ml):</p>"
                )
                body.append(table_html(frame, ["method", "subject", "full", "defaced", "difference", "difference_pct"]))
                body.append(_worst_links(frame, cohort.name, outcome, links))
        return body

    return section("agreement", per_cohort(study, draw, "No agreement table: no analysis ran for this cohort."))


def _worst_links(frame: pd.DataFrame, cohort: str, outcome: str, links: Links) -> str:
    """Links to each worst-agreeing subject's defaced images, renders and label maps (those that exist)."""
    items = []
    for row in frame.itertuples():
        subject = f"sub-{row.subject}"
        targets = [
            ("defaced images", links.to("defaced", cohort, row.method, subject, "anat")),
            ("full-image label map", links.to("segmentations", cohort, outcome, f"{subject}_variant-none")),
            ("defaced label map", links.to("segmentations", cohort, outcome, f"{subject}_variant-{row.method}")),
            ("renders", links.to("renders", cohort, subject)),
        ]
        found = [f'<a href="{esc(t)}">{esc(name)}</a>' for name, t in targets if t]
        items.append(f"<li>{esc(subject)} ({esc(row.method)}): {', '.join(found) or 'no image files found'}</li>")
    return f'<ul class="note">{"".join(items)}</ul>'


# --------------------------------------------------------------------------- overlap


def overlap_section(study: StudyResults) -> str:

    def draw(cohort: CohortResults) -> list[str]:
        accuracy = cohort.table("accuracy")
        against_reference = (
            [
                "<p>Accuracy against the user's reference labels (Dice, volume difference and HD95 on the "
                f"reference's grid; <code>{esc(cohort.name)}_accuracy.md</code> has every subject):</p>",
                table_html(accuracy),
            ]
            if not accuracy.empty
            else []
        )
        return _overlap(cohort) + against_reference

    def _overlap(cohort: CohortResults) -> list[str]:
        overlap = cohort.table("overlap")
        if overlap.empty or not figures.dice_columns(overlap):
            return []
        columns = figures.dice_columns(overlap)
        summary = overlap.groupby(["outcome", "method"], sort=False)[columns].agg(["mean", "min"])
        summary.columns = [f"{c}_{how}" for c, how in summary.columns]
        summary = summary.reset_index()
        summary.insert(2, "n", overlap.groupby(["outcome", "method"], sort=False).size().to_numpy())
        return [
            png_img(figures.dice_figure(overlap, cohort.name), f"Dice distributions, cohort {cohort.name}"),
            table_html(summary),
        ]

    return section(
        "overlap", per_cohort(study, draw, "No overlap values: no label maps were compared for this cohort.")
    )


# --------------------------------------------------------------------------- defacing and privacy


def _render_path(results: Path, value) -> Path | None:
    """A render path from a defacing record: absolute, relative to the working directory, or to the results."""
    if not value:
        return None
    path = Path(str(value))
    for candidate in (path, Path.cwd() / path, results.parent / path, results / path):
        if candidate.is_file():
            return candidate
    return None


def _montage_rows(study: StudyResults, cohort: CohortResults):
    """Subject -> (modality, {variant: (render, face detected)}) for the montage, T1w preferred."""
    by_subject: dict[str, dict] = {}
    for record in cohort.deface_records:
        images = record.get("images") or {}
        modality = "T1w" if "T1w" in images else next(iter(sorted(images)), None)
        if modality is None:
            continue
        info = images[modality]
        entry = by_subject.setdefault(str(record.get("subject")), {"modality": modality, "tiles": {}})
        entry["tiles"].setdefault(
            "full", (_render_path(study.results, info.get("render_full")), info.get("face_detected_full"))
        )
        entry["tiles"][str(record.get("method"))] = (
            _render_path(study.results, info.get("render_defaced")),
            info.get("face_detected_defaced"),
        )
    return by_subject


def _face_caption(detected) -> str:
    if detected is None:
        return "not checked"
    return "face found" if detected else "no face found"


def brain_removed_rows(cohort: CohortResults) -> pd.DataFrame:
    """The defaced images whose record flags ``brain_removed`` (:func:`defacebench.integrity.brain_removed_flag`)."""
    rows = []
    for record in cohort.deface_records:
        for modality, info in sorted((record.get("images") or {}).items()):
            if info.get("brain_removed") is True:
                rows.append(
                    {
                        "subject": str(record.get("subject")),
                        "method": str(record.get("method")),
                        "modality": modality,
                        "brain_voxels_changed_pct": info.get("brain_removed_pct"),
                        "threshold_pct": info.get("brain_removed_threshold_pct"),
                        "status": info.get("status", ""),
                    }
                )
    columns = ["subject", "method", "modality", "brain_voxels_changed_pct", "threshold_pct", "status"]
    return pd.DataFrame(rows, columns=columns).sort_values(["method", "subject", "modality"])


def _brain_removed_alert(flagged: pd.DataFrame) -> str:
    methods = ", ".join(sorted(set(flagged["method"])))
    return (
        f'<p class="alert">Defacing removed brain on {len(flagged)} image(s) ({esc(methods)}): more than the '
        "threshold share of the full image's brain voxels changed. Every analysis of such an image measured a "
        "brain that defacing cut; its value is not a defacing effect on the method but damage to the input "
        "(deface.brain_removed_is_failure: true turns these into defacing failures).</p>"
    )


def _no_face_note(cohort: CohortResults) -> list[str]:
    """A note naming the subjects whose scans had no face (defacing records with status ``no_face``)."""
    reasons = {}
    for record in cohort.deface_records:
        if record.get("status") == "no_face":
            reasons.setdefault(str(record.get("subject")), record.get("message", ""))
    if not reasons:
        return []
    rows = pd.DataFrame([{"subject": s, "why": why} for s, why in sorted(reasons.items())])
    return [
        f'<p class="note">{len(reasons)} subject(s) had no face to remove (skull-stripped or already defaced by '
        "the provider; criterion in defacebench.deface.face): no method ran on them, each method's variant is the "
        "full image, so their analyses equal the full image's and add no defacing effect to the agreement.</p>",
        table_html(rows),
    ]


def defacing_section(study: StudyResults) -> str:

    def draw(cohort: CohortResults) -> list[str]:
        flagged = brain_removed_rows(cohort)
        alert = [_brain_removed_alert(flagged), table_html(flagged)] if len(flagged) else []
        return alert + _no_face_note(cohort) + _draw(cohort)

    def _draw(cohort: CohortResults) -> list[str]:
        rows = _montage_rows(study, cohort)
        methods = [m for m in study.methods if any(m in r["tiles"] for r in rows.values())]
        shown = sorted(rows)[:MONTAGE_SUBJECTS]
        body = []
        if shown:
            tiles = []
            for subject in shown:
                renders = rows[subject]["tiles"]
                tiles.append(
                    [
                        (
                            variant,
                            renders.get(variant, (None, None))[0],
                            _face_caption(renders.get(variant, (None, None))[1]),
                        )
                        for variant in ["full"] + methods
                    ]
                )
            labels = [f"sub-{s} ({rows[s]['modality']})" for s in shown]
            body.append(
                png_img(
                    figures.render_montage(tiles, labels, f"Frontal renders, cohort {cohort.name}"),
                    f"render montage, cohort {cohort.name}",
                )
            )
            if len(rows) > len(shown):
                body.append(
                    f'<p class="note">{len(shown)} of {len(rows)} subjects shown; every render is in '
                    f"renders/{esc(cohort.name)}/.</p>"
                )
        else:
            body.append('<p class="note">No renders (defacing did not run or rendering was switched off).</p>')
        defacing = cohort.table("defacing")
        if not defacing.empty:
            body.append(
                png_img(figures.defacing_chart(defacing, cohort.name), f"defacing changes, cohort {cohort.name}")
            )
            body.append(table_html(defacing))
        return body

    return section("defacing", per_cohort(study, draw, ""))


# --------------------------------------------------------------------------- quality


#: Largest standardised IQM changes named per method in the study's own IQM summary.
IQM_LARGEST = 3


def iqm_summary(agreement: pd.DataFrame, multivariate: pd.DataFrame) -> pd.DataFrame:
    """Per method: how many IQMs moved (Holm p < 0.05), the largest standardised biases, the joint test's p.

    A change is the Bland-Altman bias relative to the full images' mean of the IQM
    (|bias| / |mean_full|): how far an IQM moves on its own scale, which is what "barely moves"
    (Provins et al. 2025) is about.
    """
    rows = []
    for method, part in agreement.groupby("method", sort=False):
        defined = part[part["mean_full"].abs() > 0].copy()
        defined["relative"] = (defined["bias"] / defined["mean_full"]).abs()
        largest = defined[defined["relative"] > 0].nlargest(IQM_LARGEST, "relative")
        joint = multivariate[(multivariate.get("method") == method)] if "method" in multivariate else pd.DataFrame()
        rows.append(
            {
                "method": method,
                "n_pairs": int(part["n"].max()),
                "iqms": len(part),
                "iqms_changed_holm_p<0.05": int((part["p_holm"] < 0.05).sum()),
                "largest_relative_change": ", ".join(f"{r.iqm} {100 * r.relative:.1f} %" for r in largest.itertuples())
                or "none: every IQM equal on both images",
                "joint_test_p": joint["p"].iloc[-1] if len(joint) and "p" in joint else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _study_iqms(study: StudyResults) -> list[str]:
    body = []
    for cohort in study.cohorts:
        agreement = cohort.table("iqm_agreement")
        if agreement.empty or "p_holm" not in agreement:
            continue
        body.append(f"<h4>Cohort {esc(cohort.name)}{sim_badge(cohort)}</h4>")
        body.append(table_html(iqm_summary(agreement, cohort.table("iqm_multivariate"))))
    if body:
        body.insert(
            0,
            "<h3>Image-quality metrics of this study's images</h3><p>Per defacing method: the IQMs "
            "(defacebench-iqms, after MRIQC) whose paired difference from the full image is significant "
            "after Holm's correction, the largest changes relative to the full images' mean, and the "
            "joint test's p. Every IQM is in each cohort's iqm_agreement table.</p>",
        )
    return body


def quality_section(study: StudyResults) -> str:
    own_iqms = _study_iqms(study)
    if not study.quality and not study.rating and not own_iqms:
        return section(
            "quality",
            '<p class="note">The quality and ratings arms did not run in this study '
            "(no ratings_lmm, ratings_agreement, iqm_agreement or iqm_multivariate table, "
            "and no ratings of this study's images).</p>",
        )
    body = [png_img(path.read_bytes(), f"quality arm figure {path.stem}") for path in study.quality_figures]
    groups = [("Provins et al. (2025) data", study.quality), ("Blinded ratings of this study's images", study.rating)]
    for title, group in groups:
        if group:
            body.append(f"<h3>{esc(title)}</h3>")
        for name, table in group.items():
            body.append(f"<h4>{esc(name.replace('_', ' '))}</h4>")
            body.append(table_html(table.head(QUALITY_ROWS)))
            if len(table) > QUALITY_ROWS:
                body.append(
                    f'<p class="note">First {QUALITY_ROWS} of {len(table)} rows; all are in {esc(name)}.tsv.</p>'
                )
    body += own_iqms
    return section("quality", "".join(body))


# --------------------------------------------------------------------------- claims


def _scope(result: claim_checks.ClaimResult) -> str:
    """Which data a row judged: a cohort, all cohorts pooled, or the paper's own published data."""
    if result.paper == claim_checks.PROVINS:
        return "the paper's data"
    return "all cohorts" if result.scope == "study" else result.scope


def claims_section(results: list[claim_checks.ClaimResult]) -> str:
    frame = claim_checks.results_frame(results)
    counts = frame["verdict"].value_counts()
    summary = ", ".join(f"{n} {esc(v)}" for v, n in counts.items())
    rows = []
    for r in results:
        data = f' <span class="badge sim">{esc(r.data)}</span>' if r.data and r.data != "real" else ""
        rows.append(
            f'<tr><td>{esc(r.paper)}</td><td>{esc(r.claim)}<br><span class="note">{esc(r.source)}</span></td>'
            f"<td>{esc(r.published)}</td><td>{esc(_scope(r))}</td><td>{esc(r.obtained)}</td>"
            f'<td><span class="badge {VERDICT_CLASS.get(r.verdict, "v-na")}">{esc(r.verdict)}</span>{data}</td>'
            f"<td>{esc(r.why)}</td></tr>"
        )
    table = (
        '<div class="scroll"><table><thead><tr><th>paper</th><th>claim</th><th>published</th><th>data</th><th>this run</th>'
        "<th>verdict</th><th>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )
    return section("claims", f"<p>{len(results)} rows: {summary}.</p>{table}")


# --------------------------------------------------------------------------- document


def build_html(study: StudyResults, out_path: str | Path, claim_results: list[claim_checks.ClaimResult]) -> str:
    """The whole report as one HTML string (``out_path`` only fixes where relative links start)."""
    links = Links(study.results, Path(out_path).parent)
    simulated = [c.name for c in study.cohorts if c.simulated]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not study.cohorts:
        data_note = "No image cohort: this study works from published tables."
    elif simulated:
        data_note = f"Simulated cohorts: {', '.join(simulated)}; their results test the pipeline, not patients."
    else:
        data_note = "All cohorts are real data."
    sections = [
        study_section(study),
        failures_section(study),
        agreement_section(study, links),
        overlap_section(study),
        defacing_section(study),
        quality_section(study),
        claims_section(claim_results),
    ]
    flagged = sum(len(brain_removed_rows(c)) for c in study.cohorts)
    alert = (
        f'<p class="alert">Defacing removed brain on {flagged} image(s): see '
        '<a href="#defacing">Defacing and privacy</a>.</p>'
        if flagged
        else ""
    )
    nav = "".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in SECTIONS.items())
    title = f"defacebench study report: {study.config.get('study', '')}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>What defacing did to automated image analysis, after de Sitter et al. "
        f"(2020, Eur Radiol 30:1062), and to quality assessment, after Provins et al. (2025, PLoS Biol "
        f"23:e3003149). Generated {esc(stamp)} from {esc(study.results)}.</p><p>{esc(data_note)}</p>{alert}</header>"
        f"<nav>{nav}</nav><main>{''.join(sections)}</main></body></html>\n"
    )
