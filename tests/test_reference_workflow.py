"""Reference labels in the study (issue 24): the plan resolves a cohort's reference block, every analysis of the
full image and each variant records its accuracy against it, and the cohort gets an accuracy table."""

import json
import sys
import types

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from defacebench import runner, tables
from defacebench.cohorts import analysis_reference
from defacebench.reports import accuracy_lines, write_accuracy_tables
from defacebench.study import ConfigError, plan_cohorts

SHAPE = (20, 20, 20)


def _save(data, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.int16), np.eye(4)), path)
    return path


def _description(root, kind="raw"):
    root.mkdir(parents=True, exist_ok=True)
    description = {"Name": root.name, "BIDSVersion": "1.9.0"}
    if kind == "derivative":
        description["DatasetType"] = "derivative"
    (root / "dataset_description.json").write_text(json.dumps(description))


@pytest.fixture
def bids(tmp_path):
    """Two subjects with a FLAIR whose bright box is the lesion; a manual lesion mask for sub-01 only."""
    root = tmp_path / "bids"
    _description(root)
    for subject in ("01", "02"):
        flair = np.zeros(SHAPE)
        flair[5:10, 5:10, 5:10] = 100  # 125 voxels: 0.125 ml
        _save(flair, root / f"sub-{subject}" / "anat" / f"sub-{subject}_FLAIR.nii.gz")
    manual = root / "derivatives" / "manual"
    _description(manual, "derivative")
    mask = np.zeros(SHAPE)
    mask[5:10, 5:10, 5:12] = 1  # the reference is 2 voxels deeper: 175 voxels
    _save(mask, manual / "sub-01" / "anat" / "sub-01_desc-lesion_mask.nii.gz")
    return root


def _config(tmp_path, bids, reference):
    return {
        "study": "t",
        "results": str(tmp_path / "results"),
        "methods": ["quickshear"],
        "cohorts": [
            {"name": "ms", "source": "bids", "bids_root": str(bids), "outcomes": ["WMLV"], "reference": reference}
        ],
    }


@pytest.fixture
def lesion_arm(monkeypatch):
    """A WMLV arm labelling every FLAIR voxel above 50 as lesion."""
    module = types.ModuleType("fake_lesion_arm")

    def lesions(images, **settings):
        flair = images["FLAIR"]
        labels = (np.asarray(flair.dataobj) > 50).astype(np.uint8)
        return {
            "value": float(labels.sum()) / 1000,
            "backend": "fake-lesions",
            "segmentation": nib.Nifti1Image(labels, flair.affine),
        }

    module.lesions = lesions
    monkeypatch.setitem(sys.modules, "fake_lesion_arm", module)
    monkeypatch.setitem(runner.ARMS, "WMLV", ("fake_lesion_arm", "lesions"))


def test_the_plan_resolves_the_reference_block(tmp_path, bids):
    cohort = plan_cohorts(_config(tmp_path, bids, {"name": "manual"}), tmp_path)["ms"]
    assert cohort.reference == {"derivatives": str(bids / "derivatives" / "manual"), "outcomes": {"WMLV": {}}}
    assert analysis_reference(cohort.reference, "WMLV")["derivatives"] == str(bids / "derivatives" / "manual")
    assert analysis_reference(cohort.reference, "NBV") is None  # not listed: no reference fields at all
    absent = plan_cohorts(_config(tmp_path, bids, {"name": "nothing"}), tmp_path)["ms"]
    assert absent.reference["derivatives"] is None and any("no derivatives dataset" in w for w in absent.warnings)
    with pytest.raises(ConfigError, match=r"reference\.derivatives: .* is not a BIDS dataset"):
        plan_cohorts(_config(tmp_path, bids, {"derivatives": str(tmp_path / "nowhere")}), tmp_path)
    with pytest.raises(ConfigError, match=r"reference\.outcomes: GBV not among"):
        plan_cohorts(_config(tmp_path, bids, {"name": "manual", "outcomes": {"GBV": {}}}), tmp_path)


def test_every_variant_records_its_accuracy_and_the_cohort_gets_a_table(tmp_path, bids, lesion_arm):
    cohort = plan_cohorts(_config(tmp_path, bids, {"name": "manual", "outcomes": {"WMLV": {}}}), tmp_path)["ms"]
    reference = analysis_reference(cohort.reference, "WMLV")
    # the defaced variant: the same image with one lesion slab cut (as a defacing that removed brain would)
    cut = np.asarray(nib.load(cohort.images["01"]["FLAIR"]).dataobj).copy()
    cut[5:10, 5:10, 5:7] = 0
    variants = {
        "none": cohort.images,
        "quickshear": {"01": {"FLAIR": _save(cut, tmp_path / "q" / "sub-01_FLAIR.nii.gz")}, "02": cohort.images["02"]},
    }
    paths = []
    for variant, images in variants.items():
        for subject in cohort.subjects:
            records = runner.analyse(
                "WMLV", images[subject], cohort="ms", subject=subject, variant=variant, reference=reference
            )
            path = tmp_path / "records" / f"sub-{subject}_variant-{variant}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(records))
            paths.append(path)
    full = json.loads(paths[0].read_text())[0]["details"]
    assert full["reference"].endswith("sub-01_desc-lesion_mask.nii.gz")
    assert full["dice_vs_reference"] == pytest.approx(2 * 125 / 300)
    assert full["volume_difference_ml"] == pytest.approx(-0.05) and full["hd95_mm"] == pytest.approx(2.0)
    defaced = json.loads(paths[2].read_text())[0]["details"]
    assert defaced["dice_vs_reference"] == pytest.approx(2 * 75 / 250) and defaced[
        "volume_difference_ml"
    ] == pytest.approx(-0.1)
    missing = json.loads(paths[1].read_text())[0]["details"]
    assert "dice_vs_reference" not in missing and "no reference for sub-02" in missing["reference_missing"]

    write_accuracy_tables(tables.load_records(paths), tmp_path, "ms")
    table = pd.read_csv(tmp_path / "ms_accuracy.tsv", sep="\t", na_values=["n/a"])
    assert list(table["method"]) == ["none", "quickshear"] and list(table["n"]) == [1, 1]
    assert list(table["n_no_reference"]) == [1, 1]
    assert table["dice_mean"].tolist() == pytest.approx([2 * 125 / 300, 2 * 75 / 250])
    assert table["dice_diff_vs_full_mean"].iloc[1] == pytest.approx(2 * 75 / 250 - 2 * 125 / 300)
    assert np.isnan(table["dice_diff_vs_full_mean"].iloc[0])
    assert table["volume_difference_ml_mean"].tolist() == pytest.approx([-0.05, -0.1])
    text = (tmp_path / "ms_accuracy.md").read_text()
    assert "Accuracy against the reference labels: cohort ms" in text and "## Per subject" in text
    lines = accuracy_lines(tmp_path / "ms_accuracy.tsv")
    assert lines[0] == "Accuracy against the reference labels (ms):"
    assert "quickshear" in lines[2] and "Dice 0.6000 (vs full -0.2333); volume difference -0.10 ml; HD95" in lines[2]


def test_a_cohort_without_a_reference_gets_an_empty_accuracy_table(tmp_path, bids, lesion_arm):
    cohort = plan_cohorts(_config(tmp_path, bids, {"name": "manual"}), tmp_path)["ms"]
    [record] = runner.analyse("WMLV", cohort.images["01"], cohort="ms", subject="01", variant="none")
    assert not any(key.startswith("reference") or key == "dice_vs_reference" for key in record["details"])
    path = tmp_path / "r.json"
    path.write_text(json.dumps([record]))
    write_accuracy_tables(tables.load_records([path]), tmp_path, "ms")
    assert pd.read_csv(tmp_path / "ms_accuracy.tsv", sep="\t").empty
    assert "has no `reference` block" in (tmp_path / "ms_accuracy.md").read_text()


def test_the_report_shows_the_accuracy_table():
    from defacebench.report.data import CohortResults, StudyResults
    from defacebench.report.html import overlap_section

    accuracy = pd.DataFrame([{"outcome": "WMLV", "method": "none", "n": 1, "dice_mean": 0.8333}])
    cohort = CohortResults(name="ms", source="bids", tables={"accuracy": accuracy})
    study = StudyResults(results=".", config={}, cohorts=[cohort], benchmarks=pd.DataFrame(), quality={})
    html = overlap_section(study)
    assert "Accuracy against the user's reference labels" in html and "0.8333" in html
    assert "No overlap values" not in html


@pytest.mark.parametrize(("kind", "flagged"), [("ms", True), (None, False), ("healthy", False)])
def test_a_near_zero_lesion_volume_in_an_ms_cohort_is_flagged(tmp_path, lesion_arm, kind, flagged):
    flair = np.zeros(SHAPE)
    flair[5:7, 5:7, 5:7] = 100  # 8 voxels: 0.008 ml
    path = _save(flair, tmp_path / "sub-01_FLAIR.nii.gz")
    [record] = runner.analyse("WMLV", {"FLAIR": path}, cohort="ms", subject="01", variant="none", cohort_kind=kind)
    assert record["status"] == "ok" and record["value"] == pytest.approx(0.008)
    assert ("plausibility" in record["details"]) is flagged
    if flagged:
        assert record["details"]["plausibility"] == "near_zero_lesion_volume_in_ms"
        assert "0.01 ml of lesions (< 0.2 ml) in a cohort labelled MS" in record["details"]["warnings"][0]
    # the threshold is a setting: at 0.005 ml, 0.008 ml passes
    [record] = runner.analyse(
        "WMLV",
        {"FLAIR": path},
        cohort="ms",
        subject="01",
        variant="none",
        cohort_kind=kind,
        settings={"near_zero_ml": 0.005},
    )
    assert "plausibility" not in record["details"]
