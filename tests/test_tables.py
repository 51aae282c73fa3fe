"""Failure log, complete cases and agreement tables from records."""

import json

import numpy as np
import pandas as pd
import pytest

from defacebench import stats, tables
from defacebench.records import Record

METHODS = (("none", 0.0), ("quickshear", 5.0), ("facemasking", -3.0))


def write_records(tmp_path, fail=(), outcomes=("NBV",), subjects=5, cohort="c", skip=(), no_value=()):
    """Record files for ``subjects`` x variants x outcomes, one JSON list per subject and variant.

    ``fail`` and ``no_value`` list (subject, variant, outcome) triples that fail / are ok without a value;
    ``skip`` lists (subject, variant) pairs that have no record file at all.
    """
    rng = np.random.default_rng(1)
    paths = []
    for s in range(1, subjects + 1):
        subject = f"{s:03d}"
        for variant, shift in METHODS:
            if (subject, variant) in skip:
                continue
            records = []
            for outcome in outcomes:
                truth = 1400 + 40 * s if outcome == "NBV" else 5.0 + s
                record = Record(
                    cohort=cohort,
                    subject=subject,
                    variant=variant,
                    outcome=outcome,
                    unit="ml",
                    backend=f"test-{outcome.lower()}",
                    truth=truth,
                    tool_versions={"numpy": np.__version__},
                )
                if (subject, variant, outcome) in fail:
                    record.status, record.failed_stage, record.message = "failed", "brain_extraction", "empty mask"
                elif (subject, variant, outcome) not in no_value:
                    record.value = truth + shift * (truth / 1400) + rng.normal(0, 2 * truth / 1400)
                records.append(record.to_dict())
            path = tmp_path / f"{cohort}_sub-{subject}_variant-{variant}.json"
            path.write_text(json.dumps(records))
            paths.append(path)
    return paths


def make_records(tmp_path, **kwargs):
    return tables.load_records(write_records(tmp_path, **kwargs))


def test_load_records_one_row_per_record_with_json_strings(tmp_path):
    df = make_records(tmp_path, outcomes=("NBV", "WMLV"), fail={("002", "none", "WMLV")})
    assert len(df) == 5 * 3 * 2 and list(df.columns) == list(tables.RECORD_COLUMNS)
    assert df["subject"].iloc[0] == "001"
    assert json.loads(df["tool_versions"].iloc[0]) == {"numpy": np.__version__}
    assert json.loads(df["details"].iloc[0]) == {}
    failed = df[df["status"] == "failed"]
    assert len(failed) == 1 and np.isnan(failed["value"].iloc[0])


def test_complete_case_rule_drops_a_subject_from_every_method(tmp_path):
    df = make_records(tmp_path, fail={("003", "quickshear", "NBV")})
    assert tables.complete_cases(df, "NBV", "c") == ["001", "002", "004", "005"]
    agreement = tables.agreement_table(df, "c").set_index("method")
    assert (agreement["n_complete"] == 4).all()  # facemasking loses sub-003 too


def test_complete_cases_are_per_outcome(tmp_path):
    df = make_records(tmp_path, outcomes=("NBV", "WMLV"), fail={("003", "quickshear", "NBV")})
    assert "003" not in tables.complete_cases(df, "NBV")
    assert "003" in tables.complete_cases(df, "WMLV")
    agreement = tables.agreement_table(df).set_index(["outcome", "method"])
    assert agreement.loc[("NBV", "facemasking"), "n_complete"] == 4
    assert agreement.loc[("WMLV", "facemasking"), "n_complete"] == 5
    assert list(agreement.index.get_level_values("outcome").unique()) == ["NBV", "WMLV"]  # study order


def test_missing_record_or_missing_value_is_not_a_complete_case(tmp_path):
    df = make_records(tmp_path, skip={("002", "facemasking")}, no_value={("004", "none", "NBV")})
    assert tables.complete_cases(df, "NBV") == ["001", "003", "005"]
    failures = tables.failure_table(df).set_index("method")
    # ok without a value counts as a failure on the full image
    assert failures.loc["quickshear", "failed_full"] == 1
    assert failures.loc["quickshear", "failure_reasons_full"] == "no value: 1"
    # sub-002 has no facemasking record, so it is not paired for that method
    assert failures.loc["facemasking", "n_subjects"] == 4 and failures.loc["quickshear", "n_subjects"] == 5


def test_forced_failure_reaches_the_failure_table_and_leaves_agreement(tmp_path):
    df = make_records(tmp_path, fail={("003", "quickshear", "NBV"), ("004", "none", "NBV")})
    failures = tables.failure_table(df).set_index("method")
    row = failures.loc["quickshear"]
    assert (row.failed_full, row.failed_defaced, row.both_failed) == (1, 1, 0)
    assert (row.mcnemar_b, row.mcnemar_c) == (1, 1) and row.mcnemar_p == 1.0
    assert row.failure_reasons == "brain_extraction: 1" and row.failure_reasons_full == "brain_extraction: 1"
    assert failures.loc["facemasking", "failed_defaced"] == 0 and failures.loc["facemasking", "failure_reasons"] == ""
    assert tables.complete_cases(df, "NBV") == ["001", "002", "005"]
    assert (tables.agreement_table(df)["n_complete"] == 3).all()


def test_mcnemar_in_failure_table_counts_defacing_only_failures(tmp_path):
    fail = {(f"{s:03d}", "quickshear", "NBV") for s in range(1, 7)}
    df = make_records(tmp_path, subjects=8, fail=fail)
    row = tables.failure_table(df).set_index("method").loc["quickshear"]
    assert (row.mcnemar_b, row.mcnemar_c) == (0, 6) and row.mcnemar_p == pytest.approx(2 * 0.5**6)
    assert row.failure_reasons == "brain_extraction: 6"


def test_agreement_statistics_and_truth_error(tmp_path):
    df = make_records(tmp_path)
    row = tables.agreement_table(df).set_index("method").loc["quickshear"]
    assert row.n_complete == 5 and row.backend == "test-nbv"
    assert row.mean_diff == pytest.approx(5, abs=3)
    assert 0 < row.icc_a1 <= 1 and row.icc_a1_ci_low < row.icc_a1 < row.icc_a1_ci_high
    assert row.mape_full_vs_truth_pct < 0.5 and row.mape_defaced_vs_truth_pct > row.mape_full_vs_truth_pct
    # the table is exactly the statistics module on the complete cases
    subjects, full, defaced, _ = tables.paired_values(df, "NBV", "quickshear")
    assert row.icc_a1 == pytest.approx(stats.icc(full, defaced)["icc"])
    assert row.t_p == pytest.approx(stats.paired_t(full, defaced)["pval"])
    assert row.ba_loa_high == pytest.approx(stats.bland_altman(full, defaced)["loa_high"])


def test_two_complete_cases_still_give_an_icc(tmp_path):
    fail = {(f"{s:03d}", "none", "NBV") for s in range(3, 6)}
    row = tables.agreement_table(make_records(tmp_path, fail=fail)).iloc[0]
    assert row.n_complete == 2 and np.isfinite(row.icc_a1) and "closed form used" in row.note


def test_too_few_complete_cases_give_nan_statistics_with_a_note(tmp_path):
    fail = {(f"{s:03d}", "none", "NBV") for s in range(2, 6)}
    df = make_records(tmp_path, fail=fail)
    row = tables.agreement_table(df).iloc[0]
    assert row.n_complete == 1 and np.isnan(row.icc_a1) and np.isnan(row.t_p)
    assert "at least 2" in row.note
    text = tables.summary_text(df)
    assert "n=1 complete of 5 subjects [n = 1 < 5: not interpretable]" in text and "ICC(A,1)=n/a" in text


def test_small_n_is_flagged_and_the_summary_leads_with_significant_findings(tmp_path):
    small = make_records(tmp_path, subjects=3)
    row = tables.agreement_table(small).iloc[0]
    assert row.note.startswith("n = 3 < 5: not interpretable")
    text = tables.summary_text(small)
    # quickshear shifts every value by about 5 ml, but three subjects are not a finding
    assert text.splitlines()[1] == "  none"
    assert all("[n = 3 < 5: not interpretable]" in line for line in text.splitlines() if "ICC(A,1)=" in line)
    (tmp_path / "big").mkdir()
    big = make_records(tmp_path / "big", subjects=8)
    text = tables.summary_text(big)
    lines = text.splitlines()
    assert lines[0].startswith("Findings") and lines[2].startswith("  c NBV quickshear: mean diff +")
    assert "(n=8; paired t p=" in lines[2] and "not interpretable" not in text
    assert "- NBV: 3 of 3 subjects (n = 3 < 5: not interpretable" in tables.to_markdown(
        tables.agreement_table(small), "t", small, tables._complete_case_lines(small)
    )


def test_duplicates_and_mixed_cohorts_are_refused(tmp_path):
    df = make_records(tmp_path)
    with pytest.raises(ValueError, match="share"):
        tables.agreement_table(pd.concat([df, df.iloc[:1]]))
    (tmp_path / "d").mkdir()
    other = make_records(tmp_path / "d", cohort="d")
    both = pd.concat([df, other], ignore_index=True)
    with pytest.raises(ValueError, match="several cohorts"):
        tables.complete_cases(both, "NBV")
    assert len(tables.failure_table(both, "d")) == 2


def test_written_tables_have_legends_provenance_and_string_subjects(tmp_path):
    df = make_records(tmp_path, fail={("002", "facemasking", "NBV")})
    out = tmp_path / "tables"
    paths = tables.write_tables(df, out, "c")
    for name in ("records.tsv", "failures.tsv", "failures.md", "agreement.tsv", "agreement.md"):
        assert (out / f"c_{name}").stat().st_size > 0
    assert set(paths) == {"records", "failures_tsv", "failures_md", "agreement_tsv", "agreement_md"}
    markdown = (out / "c_agreement.md").read_text()
    assert "test-nbv" in markdown and f"numpy {np.__version__}" in markdown
    assert "- NBV: 4 of 5 subjects (excluded: 002)" in markdown
    for column in tables.AGREEMENT_COLUMNS:
        assert f"- `{column}`: {tables.COLUMN_DESCRIPTIONS[column]}" in markdown
    assert "failure_reasons_full" in (out / "c_failures.md").read_text()
    agreement = pd.read_csv(out / "c_agreement.tsv", sep="\t")
    assert list(agreement.columns) == list(tables.AGREEMENT_COLUMNS) and len(agreement) == 2
    records = tables.read_records_tsv(out / "c_records.tsv")
    assert records["subject"].iloc[0] == "001" and len(records) == 15
    # the summary works on records read back from the TSV
    assert "ICC(A,1)=" in tables.summary_text(records)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_plot_agreement_writes_a_png(tmp_path):
    df = make_records(tmp_path, outcomes=("NBV", "WMLV"))
    png = tables.plot_agreement(df, tmp_path / "c_agreement.png", "c")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    empty = tables.plot_agreement(df.iloc[:0], tmp_path / "empty.png", "c")
    assert empty.stat().st_size > 0


def _deface_record(tmp_path, subject, method, **image):
    """A defacing record (the deface rule's JSON) with one T1w entry."""
    entry = {"status": "ok", "brain_voxels_changed_fraction": 0.0, "face_region_changed_fraction": 0.9, **image}
    record = {"cohort": "c", "subject": subject, "method": method, "status": entry["status"], "images": {"T1w": entry}}
    path = tmp_path / f"sub-{subject}_method-{method}.json"
    path.write_text(json.dumps(record))
    return path


def test_defacing_table_and_summary_flag_brain_removed(tmp_path):
    from defacebench.reports import defacing_records, defacing_table, write_study_summary

    removed = {"brain_removed": True, "brain_removed_pct": 6.3, "brain_voxels_changed_fraction": 0.063}
    paths = [
        _deface_record(tmp_path, "001", "pydeface", **removed),
        _deface_record(tmp_path, "002", "pydeface", brain_removed=False, brain_removed_pct=0.0),
        # a flagged image made a failure (deface.brain_removed_is_failure) still counts as brain removed
        _deface_record(tmp_path, "003", "pydeface", **{**removed, "status": "failed", "brain_removed_pct": 4.0}),
        _deface_record(tmp_path, "001", "quickshear", brain_removed=False, brain_removed_pct=0.0),
        _deface_record(tmp_path, "002", "quickshear", brain_removed=None),  # not measured: not flagged
    ]
    table = defacing_table(defacing_records(paths)).set_index("method")
    assert table.loc["pydeface", "n_brain_removed"] == 2 and table.loc["pydeface", "brain_removed_max_pct"] == 6.3
    assert table.loc["quickshear", "n_brain_removed"] == 0 and np.isnan(
        table.loc["quickshear", "brain_removed_max_pct"]
    )
    tsv = tmp_path / "c_defacing.tsv"
    table.reset_index().to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    text = write_study_summary([], [tsv], tmp_path / "summary.txt", "s")
    loud = [line for line in text.splitlines() if "BRAIN REMOVED" in line]
    assert len(loud) == 1 and "pydeface" in loud[0] and "2/3 T1w" in loud[0] and "6.30 %" in loud[0]


def test_defacing_table_counts_no_face_apart_from_failures(tmp_path):
    from defacebench.reports import defacing_records, defacing_table, write_study_summary

    no_face = {"status": "no_face", "brain_removed": False, "brain_voxels_changed_fraction": 0.0}
    paths = [
        _deface_record(tmp_path, "001", "quickshear", **no_face),
        _deface_record(tmp_path, "002", "quickshear", brain_removed=False, face_region_changed_fraction=0.5),
        _deface_record(tmp_path, "003", "quickshear", status="failed"),
    ]
    row = defacing_table(defacing_records(paths)).iloc[0]
    assert (row.n_images, row.n_failed, row.n_no_face, row.n_brain_removed) == (3, 1, 1, 0)
    assert row.face_region_changed_mean == 0.5  # a no-face variant was not defaced: not in the means
    tsv = tmp_path / "c_defacing.tsv"
    defacing_table(defacing_records(paths)).to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    text = write_study_summary([], [tsv], tmp_path / "summary.txt", "s")
    assert "no face to remove on 1/3 images" in text
    assert "quickshear   T1w    failed 1/3; face region changed 50%" in text

    only_no_face = tmp_path / "d_defacing.tsv"  # a cohort with no face anywhere: no line of n/a means
    defacing_table(defacing_records(paths[:1])).to_csv(only_no_face, sep="\t", index=False, na_rep="n/a")
    text = write_study_summary([], [only_no_face], tmp_path / "summary.txt", "s")
    assert "no face to remove on 1/1 images" in text and "face region changed" not in text
