"""Failure log, complete cases and agreement tables from records."""

import json

import numpy as np
import pandas as pd
import pytest

from defacebench import tables
from defacebench.records import Record


def make_records(tmp_path, fail=()):
    """5 subjects x (none, quickshear, facemasking) NBV records; ``fail`` lists (subject, variant)."""
    rng = np.random.default_rng(1)
    paths = []
    for s in range(1, 6):
        subject = f"{s:03d}"
        truth = 1400 + 40 * s
        for variant, shift in (("none", 0), ("quickshear", 5), ("facemasking", -3)):
            record = Record(cohort="c", subject=subject, variant=variant, outcome="NBV", unit="ml",
                            backend="test-backend", truth=truth, tool_versions={"numpy": np.__version__})
            if (subject, variant) in fail:
                record.status, record.failed_stage, record.message = "failed", "brain_extraction", "empty mask"
            else:
                record.value = truth + shift + rng.normal(0, 2)
            path = tmp_path / f"sub-{subject}_variant-{variant}.json"
            path.write_text(json.dumps([record.to_dict()]))
            paths.append(path)
    return tables.load_records(paths)


def test_complete_case_rule_drops_a_subject_from_every_method(tmp_path):
    df = make_records(tmp_path, fail={("003", "quickshear")})
    assert tables.complete_cases(df, "NBV") == ["001", "002", "004", "005"]
    agreement = tables.agreement_table(df).set_index("method")
    assert (agreement["n_complete"] == 4).all()  # facemasking loses sub-003 too


def test_forced_failure_reaches_the_failure_table(tmp_path):
    df = make_records(tmp_path, fail={("003", "quickshear"), ("004", "none")})
    failures = tables.failure_table(df).set_index("method")
    assert failures.loc["quickshear", "failed_defaced"] == 1
    assert failures.loc["quickshear", "failed_full"] == 1
    assert failures.loc["quickshear", "mcnemar_b"] == 1 and failures.loc["quickshear", "mcnemar_c"] == 1
    assert failures.loc["quickshear", "failure_reasons"] == "brain_extraction: 1"
    assert failures.loc["facemasking", "failed_defaced"] == 0
    assert tables.complete_cases(df, "NBV") == ["001", "002", "005"]


def test_agreement_statistics_and_truth_error(tmp_path):
    df = make_records(tmp_path)
    row = tables.agreement_table(df).set_index("method").loc["quickshear"]
    assert row.n_complete == 5
    assert row.mean_diff == pytest.approx(5, abs=3)
    assert 0 < row.icc_a1 <= 1 and row.icc_a1_ci_low < row.icc_a1 < row.icc_a1_ci_high
    assert row.mape_full_vs_truth_pct < 0.5 and row.mape_defaced_vs_truth_pct > row.mape_full_vs_truth_pct


def test_written_tables_have_legends_provenance_and_string_subjects(tmp_path):
    df = make_records(tmp_path, fail={("002", "facemasking")})
    out = tmp_path / "tables"
    tables.write_tables(df, out, "c")
    tables.plot_agreement(df, out / "c_agreement.png", "c")
    markdown = (out / "c_agreement.md").read_text()
    assert "ICC(A,1)" in markdown and "test-backend" in markdown and f"numpy {np.__version__}" in markdown
    records = tables.read_records_tsv(out / "c_records.tsv")
    assert records["subject"].iloc[0] == "001"
    assert (out / "c_agreement.png").stat().st_size > 1000
    assert "ICC(A,1)=" in tables.summary_text(records)
