"""The study report (issue 22): built from small fabricated tables, then opened in headless Chromium.

The fabricated run has one simulated cohort (4 subjects, NBV and WMLV, two methods).
FaceMasking LOWERS NBV here, so de Sitter et al.'s "FaceMasking yielded higher NBV"
must read "differs"; GBV is not run, so its claims must read "not testable".
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from defacebench import tables
from defacebench.report import claims, embedded_figures, write_report
from defacebench.report.html import SECTIONS

SUBJECTS = ("001", "002", "003", "004")
METHODS = ("facemasking", "quickshear")
CONFIG = {
    "study": "fabricated",
    "results": "unused",
    "methods": list(METHODS),
    "deface": {"brain_extraction": "deepbet", "render": True},
    "analysis": {"NBV": {"backend": "sienax-like"}, "WMLV": {"backend": "lpa-like"}},
    "cohorts": [
        {"name": "demo", "source": "simulated", "kind": "ms", "n_subjects": 4, "seed": 1, "outcomes": ["NBV", "WMLV"]}
    ],
}


def _records() -> pd.DataFrame:
    """NBV: FaceMasking lowers every value by 5-8 ml; WMLV: quickshear fails on one subject."""
    rows = []
    nbv_full = {"001": 1500.0, "002": 1420.0, "003": 1610.0, "004": 1550.0}
    wmlv_full = {"001": 10.0, "002": 4.0, "003": 22.0, "004": 15.0}
    for i, subject in enumerate(SUBJECTS):
        values = {
            ("NBV", "none"): nbv_full[subject],
            ("NBV", "facemasking"): nbv_full[subject] - 5 - i,
            ("NBV", "quickshear"): nbv_full[subject] + (1.0 if i % 2 else -1.5),
            ("WMLV", "none"): wmlv_full[subject],
            ("WMLV", "facemasking"): wmlv_full[subject] + 0.5 + 0.1 * i,
            ("WMLV", "quickshear"): None if subject == "004" else wmlv_full[subject] - 0.2,
        }
        for (outcome, variant), value in values.items():
            failed = value is None
            rows.append(
                {
                    "cohort": "demo",
                    "subject": subject,
                    "variant": variant,
                    "outcome": outcome,
                    "value": np.nan if failed else value,
                    "unit": "ml",
                    "status": "failed" if failed else "ok",
                    "failed_stage": "segmentation" if failed else "",
                    "message": "no lesion found" if failed else "",
                    "runtime_s": 1.0,
                    "backend": "sienax-like (re-implementation)" if outcome == "NBV" else "lpa-like",
                    "tool_versions": json.dumps({"defacebench": "0.1.0"}),
                    "truth": nbv_full[subject] if outcome == "NBV" else wmlv_full[subject],
                    "details": "{}",
                }
            )
    return pd.DataFrame(rows, columns=list(tables.RECORD_COLUMNS))


def _render(path: Path, face: bool) -> str:
    """A tiny grey PNG standing in for a frontal render (a bright disc where the face would be)."""
    import cv2

    yy, xx = np.mgrid[:64, :64]
    image = (60 + 120 * (((yy - 32) ** 2 + (xx - 32) ** 2) < 400 * (1 if face else 0.3))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return str(path)


def make_run(results: Path) -> None:
    """Fabricated outputs of one run under ``results``, in the layout README 'Outputs' describes."""
    tables_dir = results / "tables"
    tables_dir.mkdir(parents=True)
    records = _records()
    records.to_csv(tables_dir / "demo_records.tsv", sep="\t", index=False, na_rep="n/a")
    tables.failure_table(records, "demo").to_csv(tables_dir / "demo_failures.tsv", sep="\t", index=False, na_rep="n/a")
    tables.agreement_table(records, "demo").to_csv(
        tables_dir / "demo_agreement.tsv", sep="\t", index=False, na_rep="n/a"
    )
    overlap = [
        {
            "outcome": o,
            "method": m,
            "subject": s,
            "dice_vs_full": 0.9 + 0.01 * i,
            "dice_full_vs_truth": 0.8,
            "dice_defaced_vs_truth": 0.78 + 0.01 * i,
        }
        for o in ("NBV", "WMLV")
        for m in METHODS
        for i, s in enumerate(SUBJECTS[:3])
    ]
    pd.DataFrame(overlap).to_csv(tables_dir / "demo_overlap.tsv", sep="\t", index=False)
    defacing = [
        {
            "method": m,
            "backend": f"{m} (re-implementation)",
            "modality": "T1w",
            "n_images": 4,
            "n_failed": 0,
            "face_region_changed_mean": 0.7,
            "face_region_changed_min": 0.6,
            "brain_voxels_changed_mean": 0.0,
            "brain_voxels_changed_max": 0.001,
            "face_detected_full": 4,
            "face_detected_defaced": 1,
            "runtime_s_mean": 3.0,
        }
        for m in METHODS
    ]
    pd.DataFrame(defacing).to_csv(tables_dir / "demo_defacing.tsv", sep="\t", index=False)
    for subject in SUBJECTS:
        render_dir = results / "renders" / "demo" / f"sub-{subject}"
        full = _render(render_dir / f"sub-{subject}_T1w_desc-full_render.png", face=True)
        for method in METHODS:
            (results / "defaced" / "demo" / method / f"sub-{subject}" / "anat").mkdir(parents=True)
            record = {
                "cohort": "demo",
                "subject": subject,
                "method": method,
                # subject 004's scan had no face (skull-stripped): recorded as such for each method
                "status": "no_face" if subject == "004" else "ok",
                "message": "no face to remove (skull-stripped or already defaced): 0 ml" if subject == "004" else "",
                "backend": f"{method} (re-implementation)",
                "tool_versions": {"quickshear": "1.2.0"},
                "preparation": {"brain_extraction": {"backend": "deepbet"}},
                "images": {
                    "T1w": {
                        "status": "ok",
                        "render_full": full,
                        "face_detected_full": True,
                        "render_defaced": _render(
                            render_dir / f"sub-{subject}_T1w_desc-{method}_render.png", face=False
                        ),
                        "face_detected_defaced": method == "quickshear" and subject == "001",
                        # FaceMasking "removed brain" on one subject: the report must say so loudly
                        "brain_removed": method == "facemasking" and subject == "002",
                        "brain_removed_pct": 6.2 if method == "facemasking" and subject == "002" else 0.0,
                        "brain_removed_threshold_pct": 0.1,
                    }
                },
            }
            path = results / "records" / "demo" / "deface" / f"sub-{subject}_method-{method}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    for rule, seconds in (("deface", 3.2), ("analyse", 12.5), ("tables", 0.8)):
        path = results / "benchmarks" / rule / "demo" / "job.tsv"
        path.parent.mkdir(parents=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:0{int(seconds) % 10}\t250.5\n")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = tmp_path_factory.mktemp("run") / "results"
    make_run(results)
    out = write_report(results, CONFIG, results / "report.html", figure_dir=results / "report_figures")
    return out


def _claim_rows(document: str) -> dict[str, list[str]]:
    """Claim text -> the verdicts of its rows, read back from the published-vs-reproduced table."""
    section = document[document.index('id="claims"') :]
    rows = re.findall(r"<tr><td>[^<]*</td><td>(.*?)<br>.*?<span class=\"badge v-[a-z]+\">([^<]*)</span>", section)
    out: dict[str, list[str]] = {}
    for claim_text, verdict in rows:
        out.setdefault(claim_text, []).append(verdict)
    return out


def test_report_sections_images_and_verdicts(report):
    document = report.read_text()
    assert report.stat().st_size < 20 * 1024 * 1024
    for section_id in SECTIONS:
        assert f'id="{section_id}"' in document, section_id
    # self-contained: no external script, stylesheet or image
    assert not re.search(r"<(script|link)\b", document)
    assert not re.search(r'<img[^>]+src="(?!data:)', document)
    figures = embedded_figures(document)
    assert len(figures) >= 6  # runtime, failures, agreement x2, Dice, montage, defacing
    import cv2

    for alt, png in figures:
        decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.shape[0] > 10 and decoded.shape[1] > 10, alt
    assert len(list((report.parent / "report_figures").glob("*.png"))) == len(figures)
    # every claim of the YAML has a row with a verdict; the fabricated NBV drop contradicts de Sitter
    published = claims.load_claims()
    verdicts = _claim_rows(document)
    for entry in published:
        assert verdicts.get(entry["claim"]), entry["id"]
        assert all(v in claims.VERDICTS for v in verdicts[entry["claim"]])
    by_id = {e["id"]: verdicts[e["claim"]] for e in published}
    assert by_id["nbv_higher_facemasking"] == [claims.DIFFERS]
    assert by_id["wmlv_higher_facemasking"] == [claims.SAME_DIRECTION]  # +0.5 to +0.8 ml on all four
    assert by_id["gbv_lower_quickshear"] == [claims.NOT_TESTABLE]
    assert "outcome GBV was not run" in document
    assert by_id["failures_defaced"] == [claims.DIFFERS]  # 1 of 4 WMLV analyses failed after quickshear: 25 %
    assert by_id["failures_full"] == [claims.WITHIN_INTERVAL]
    assert "badge sim" in document  # the cohort is simulated, and its verdicts say so
    # the worst-agreeing subjects link to files that exist, relative to the report
    links = re.findall(r'<a href="([^"#]+)">', document)
    assert links and all((report.parent / link).exists() for link in links)


def test_report_in_headless_chromium(report, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(report.resolve().as_uri())
        for section_id in SECTIONS:
            assert driver.find_elements("id", section_id), section_id
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);"
        )
        assert images and all(complete and width > 0 for _, complete, width in images), images
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
        assert base64.b64decode(driver.get_screenshot_as_base64())[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        driver.quit()


def test_brain_removed_is_said_loudly(report):
    """A defacing record flagged brain_removed: an alert in the header and one above the defacing section's table."""
    document = report.read_text()
    header = document[: document.index("<nav>")]
    assert 'class="alert">Defacing removed brain on 1 image(s)' in header
    defacing = document[document.index('id="defacing"') : document.index('id="quality"')]
    assert "Defacing removed brain on 1 image(s) (facemasking)" in defacing
    assert "<td>002</td><td>facemasking</td><td>T1w</td>" in defacing and ">6.2<" in defacing


def test_no_face_subjects_are_named(report):
    defacing = report.read_text()
    defacing = defacing[defacing.index('id="defacing"') : defacing.index('id="quality"')]
    assert "1 subject(s) had no face to remove" in defacing and "<td>004</td>" in defacing


def test_provins_rows_follow_the_quality_arm_check(tmp_path):
    """The quality arm's claims.tsv decides: reproduced -> within the interval (a ranking: same direction),
    not reproduced -> differs, no value -> not testable; without the arm every row is not testable."""
    entries = [
        {"id": "a", "claim": "bias", "published": -0.051, "source": "Fig 2"},
        {
            "id": "b",
            "claim": "rater 1 lowest",
            "published": -0.115,
            "source": "Fig 2",
            "check": {"kind": "row_extreme", "which": "min"},
        },
        {"id": "c", "claim": "icc", "published": 0.694, "source": "Table B"},
        {"id": "d", "claim": "df", "published": 1, "source": "Results"},
    ]
    checked = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "ours": [-0.0514, -0.1153, 0.61, np.nan],
            "reproduced": [True, True, False, False],
            "table": "ratings_agreement",
            "column": ["bias", "bias", "icc", "df"],
            "note": ["", "", "", "table not computed"],
        }
    )
    rows = claims.provins_results(entries, {"ratings_agreement": pd.DataFrame({"rater": ["pooled"]})}, checked)
    assert [r.verdict for r in rows] == [
        claims.WITHIN_INTERVAL,
        claims.SAME_DIRECTION,
        claims.DIFFERS,
        claims.NOT_TESTABLE,
    ]
    assert rows[3].why == "table not computed"
    assert {r.verdict for r in claims.provins_results(entries, {}, None)} == {claims.NOT_TESTABLE}


def test_the_studys_own_iqms_are_summarised_per_method():
    import pandas as pd

    from defacebench.report.html import iqm_summary

    agreement = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b", "b"],
            "iqm": ["efc", "cjv", "snr", "efc", "cjv", "snr"],
            "n": [5] * 6,
            "mean_full": [0.5, 0.4, 10.0, 0.5, 0.4, 10.0],
            "bias": [-0.05, 0.0, 0.1, 0, 0, 0],
            "p_holm": [0.01, 1.0, 0.2, float("nan"), float("nan"), float("nan")],
        }
    )
    multivariate = pd.DataFrame({"method": ["a", "b"], "group": ["pooled"] * 2, "p": [0.03, float("nan")]})
    summary = iqm_summary(agreement, multivariate).set_index("method")
    assert summary.loc["a", "iqms_changed_holm_p<0.05"] == 1
    assert summary.loc["a", "largest_relative_change"] == "efc 10.0 %, snr 1.0 %"
    assert summary.loc["b", "largest_relative_change"].startswith("none")
    assert summary.loc["a", "joint_test_p"] == 0.03
