"""What the study report reads: a study's tables, records, renders and benchmark files.

Everything is read from the files a run wrote under its results folder (README "Outputs"),
by column name, so the report shows only numbers the run produced. A table that is missing
reads as an empty frame; the report then says the arm did not run instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import read_records_tsv

#: The per-cohort tables of :func:`defacebench.reports.write_cohort_tables`, by file suffix.
#: ``iqm_*``: the study's own quality arm (``quality: {iqms: true}``; defacebench.quality.arm), absent otherwise.
#: ``accuracy``: against the user's reference labels (a cohort's ``reference`` block), empty otherwise.
COHORT_TABLES = (
    "records",
    "failures",
    "agreement",
    "overlap",
    "accuracy",
    "defacing",
    "iqm_agreement",
    "iqm_multivariate",
)

#: Tables of the quality arm (Provins et al. 2025), written under ``<results>/provins2025/tables`` when it ran.
QUALITY_TABLES = ("ratings_lmm", "ratings_agreement", "iqm_agreement", "iqm_multivariate")
#: The quality arm's own check of the published values (``defacebench.quality.provins2025.write_claims``).
QUALITY_CLAIMS = "claims"
#: Where the quality arm's tables are looked for, relative to the results folder, first match wins.
QUALITY_DIRS = ("provins2025/tables", "tables")
#: The blinded rating arm's analysis of this study's own images (workflow/rules/rating.smk), when raters rated.
RATING_DIR, RATING_TABLES = "rating", ("ratings_lmm", "ratings_agreement")

#: Benchmark columns of Snakemake's ``benchmark:`` files used here (seconds, MB).
BENCHMARK_SECONDS, BENCHMARK_RSS = "s", "max_rss"


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A study TSV (``n/a`` is missing; subject labels stay strings), or an empty frame when absent."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    if path.name.endswith("_records.tsv"):
        return read_records_tsv(path)
    return pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"subject": str, "cohort": str})


@dataclass
class CohortResults:
    """One cohort's configuration and tables."""

    name: str
    source: str = ""
    kind: str = ""
    n_subjects_configured: int | None = None
    outcomes: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)  # suffix -> DataFrame (COHORT_TABLES)
    deface_records: list = field(default_factory=list)  # the deface rule's JSON records

    @property
    def simulated(self) -> bool:
        """A simulated cohort (config ``source: simulated``, else records that carry a truth)."""
        if self.source:
            return self.source == "simulated"
        records = self.table("records")
        return bool("truth" in records and records["truth"].notna().any())

    def table(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    @property
    def subjects(self) -> list[str]:
        records = self.table("records")
        return sorted(records["subject"].dropna().unique()) if "subject" in records else []


@dataclass
class StudyResults:
    """Everything the report shows, read from one results folder."""

    results: Path
    config: dict
    cohorts: list  # of CohortResults, in config order
    benchmarks: pd.DataFrame  # one row per benchmark file: stage, job, seconds, max_rss_mb
    quality: dict  # QUALITY_TABLES name -> DataFrame (only those present)
    quality_claims: pd.DataFrame = field(default_factory=pd.DataFrame)  # the arm's claims.tsv, if written
    quality_figures: list = field(default_factory=list)  # the arm's PNG figures
    rating: dict = field(default_factory=dict)  # RATING_TABLES name -> DataFrame (only those present)

    @property
    def methods(self) -> list[str]:
        return [str(m) for m in self.config.get("methods", [])]


def _cohort_configs(config: dict) -> list[dict]:
    return [c for c in config.get("cohorts", []) if isinstance(c, dict) and c.get("name")]


def load_deface_records(results: Path, cohort: str) -> list[dict]:
    """The integrity records the deface rule wrote for a cohort (``records/<cohort>/deface``)."""
    folder = results / "records" / cohort / "deface"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a half-written file is not the report's to judge; the tables have the counts
    return out


def load_benchmarks(results: Path) -> pd.DataFrame:
    """One row per Snakemake benchmark file under ``<results>/benchmarks``.

    The stage is the first folder below ``benchmarks`` (the rule's name, as the
    workflow's ``benchmark:`` paths are laid out) or the file's stem for a file
    directly in it; ``seconds`` is the job's wall time (column ``s``).
    """
    root = results / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        try:
            bench = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if BENCHMARK_SECONDS not in bench or bench.empty:
            continue
        rel = path.relative_to(root)
        rows.append(
            {
                "stage": rel.parts[0] if len(rel.parts) > 1 else path.stem,
                "job": str(rel.with_suffix("")),
                "seconds": float(pd.to_numeric(bench[BENCHMARK_SECONDS], errors="coerce").mean()),
                "max_rss_mb": float(
                    pd.to_numeric(bench.get(BENCHMARK_RSS, pd.Series([np.nan])), errors="coerce").max()
                ),
            }
        )
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "max_rss_mb"])


def load_study(results: str | Path, config: dict, quality_dir: str | Path | None = None) -> StudyResults:
    """Read a study's outputs: every configured cohort's tables, the benchmarks, the quality tables.

    ``quality_dir`` is where the quality arm's tables are looked for (default: the first of
    :data:`QUALITY_DIRS` under ``results`` that holds one).
    """
    results = Path(results)
    tables_dir = results / "tables"
    cohorts = []
    for entry in _cohort_configs(config):
        name = str(entry["name"])
        tables = {suffix: read_tsv(tables_dir / f"{name}_{suffix}.tsv") for suffix in COHORT_TABLES}
        cohorts.append(
            CohortResults(
                name=name,
                source=str(entry.get("source", "")),
                kind=str(entry.get("kind", "") or ""),
                n_subjects_configured=entry.get("n_subjects"),
                outcomes=list(entry.get("outcomes", [])),
                tables=tables,
                deface_records=load_deface_records(results, name),
            )
        )
    if quality_dir is None:
        quality_dir = next(
            (
                results / d
                for d in QUALITY_DIRS
                if any((results / d / f"{name}.tsv").is_file() for name in QUALITY_TABLES)
            ),
            tables_dir,
        )
    quality_dir = Path(quality_dir)
    quality = {}
    for name in QUALITY_TABLES:
        table = read_tsv(quality_dir / f"{name}.tsv")
        if not table.empty:
            quality[name] = table
    figures = sorted(p for p in quality_dir.glob("*.png") if p.name.startswith(("ratings_", "iqm_"))) if quality else []
    rating = {name: read_tsv(results / RATING_DIR / f"{name}.tsv") for name in RATING_TABLES}
    return StudyResults(
        results=results,
        config=config,
        cohorts=cohorts,
        benchmarks=load_benchmarks(results),
        rating={name: table for name, table in rating.items() if not table.empty},
        quality=quality,
        quality_claims=read_tsv(quality_dir / f"{QUALITY_CLAIMS}.tsv") if quality else pd.DataFrame(),
        quality_figures=figures,
    )
