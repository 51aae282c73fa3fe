"""Records from the runner: study failures are recorded, bugs fail loudly."""

import json
import sys
import types

import nibabel as nib
import numpy as np
import pytest

from defacebench import runner
from defacebench.records import AnalysisFailure


@pytest.fixture
def fake_arms(monkeypatch):
    """Arms whose behaviour the test chooses, so the runner's bookkeeping is tested alone."""
    module = types.ModuleType("fake_arms")

    def volume(images, **settings):
        data = np.asarray(images["T1w"].dataobj)
        if data.max() == 0:
            raise AnalysisFailure("segmentation", "no tissue found")
        return {"value": float((data > 0).sum()) / 1000.0, "backend": "fake-volume", "whole_tumour_ml": 2.0}

    def buggy(images, **settings):
        return {}["value"]

    def labels(images, **settings):
        """The input's voxel values as a tumour label map."""
        data = np.asarray(images["T1w"].dataobj)
        if data.max() == 0:
            raise AnalysisFailure("tumour_segmentation", "no tumour")
        segmentation = nib.Nifti1Image(data.astype(np.uint8), images["T1w"].affine)
        return {"value": 1.0, "backend": "fake", "whole_tumour_ml": 2.0, "segmentation": segmentation}

    module.volume, module.buggy, module.labels = volume, buggy, labels
    monkeypatch.setitem(sys.modules, "fake_arms", module)
    monkeypatch.setitem(runner.ARMS, "NBV", ("fake_arms", "volume"))
    monkeypatch.setitem(runner.ARMS, "GBV", ("fake_arms", "volume"))
    monkeypatch.setitem(runner.OUTCOME_MODALITIES, "GBV", ("T1w",))
    return module


def write(tmp_path, name, data):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.int16), np.eye(4)), path)
    return path


def run(outcome, paths, **kw):
    return runner.analyse(outcome, paths, cohort="c", subject="01", variant=kw.pop("variant", "none"), **kw)


def test_ok_record_has_value_backend_truth_and_versions(fake_arms, tmp_path):
    t1 = write(tmp_path, "t1.nii.gz", np.ones((10, 10, 10)))
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"nbv_ml": 1.5}))
    [record] = run("NBV", {"T1w": t1}, truth_path=truth, settings={"backend": "x"})
    assert record["status"] == "ok" and record["value"] == pytest.approx(1.0)
    assert record["backend"] == "fake-volume" and record["truth"] == 1.5
    assert record["tool_versions"]["nibabel"] == nib.__version__


def test_arm_failure_is_a_failed_record(fake_arms, tmp_path):
    empty = write(tmp_path, "t1.nii.gz", np.zeros((10, 10, 10)))
    [record] = run("NBV", {"T1w": empty})
    assert record["status"] == "failed" and record["value"] is None
    assert (record["failed_stage"], record["message"]) == ("segmentation", "no tissue found")


def test_missing_image_is_a_failed_record(fake_arms, tmp_path):
    [record] = run("NBV", {"T1w": tmp_path / "absent.nii.gz"})
    assert record["status"] == "failed" and record["failed_stage"] == "input"


def test_failed_defacing_fails_the_analysis_of_that_variant(fake_arms, tmp_path):
    t1 = write(tmp_path, "t1.nii.gz", np.ones((10, 10, 10)))
    deface = tmp_path / "deface.json"
    deface.write_text(json.dumps({"status": "failed", "failed_stage": "registration", "message": "diverged"}))
    [record] = run("NBV", {"T1w": t1}, variant="quickshear", deface_record_path=deface)
    assert record["status"] == "failed" and record["failed_stage"] == "deface"
    assert "registration: diverged" in record["message"]


def test_bug_in_an_arm_propagates(fake_arms, tmp_path, monkeypatch):
    monkeypatch.setitem(runner.ARMS, "NBV", ("fake_arms", "buggy"))
    t1 = write(tmp_path, "t1.nii.gz", np.ones((10, 10, 10)))
    with pytest.raises(KeyError):
        run("NBV", {"T1w": t1})


def test_gbv_also_records_whole_tumour(fake_arms, tmp_path):
    t1 = write(tmp_path, "t1.nii.gz", np.ones((10, 10, 10)))
    records = run("GBV", {"T1w": t1})
    assert [r["outcome"] for r in records] == ["GBV", "WTV"]
    assert records[1]["value"] == 2.0 and records[1]["status"] == "ok"


def test_subject_job_writes_one_record_file_per_variant_and_fails_only_the_failed_variant(fake_arms, tmp_path):
    """analyse_subject: each variant's records in its own file; a defacing failure stays with its variant."""
    full = write(tmp_path, "full.nii.gz", np.ones((10, 10, 10)))
    defaced = write(tmp_path, "qs.nii.gz", np.pad(np.ones((10, 10, 5)), ((0, 0), (0, 0), (0, 5))))
    failed = tmp_path / "fm.json"
    failed.write_text(json.dumps({"status": "failed", "failed_stage": "registration", "message": "diverged"}))
    variants = ["none", "quickshear", "facemasking"]
    images = {"none": {"T1w": full}, "quickshear": {"T1w": defaced}, "facemasking": {"T1w": full}}
    record_paths = [tmp_path / f"{v}.json" for v in variants]
    runner.analyse_subject(
        "NBV",
        variants,
        images,
        record_paths,
        [tmp_path / f"seg-{v}" for v in variants],
        cohort="c",
        subject="01",
        deface_records={"facemasking": failed},
    )
    records = {v: json.loads(path.read_text()) for v, path in zip(variants, record_paths)}
    assert [records[v][0]["variant"] for v in variants] == variants
    assert records["none"][0]["value"] == pytest.approx(1.0)
    assert records["quickshear"][0]["value"] == pytest.approx(0.5)
    assert records["facemasking"][0]["status"] == "failed" and records["facemasking"][0]["failed_stage"] == "deface"
    with pytest.raises(ValueError, match="3 variants but 2 record_paths"):
        runner.analyse_subject("NBV", variants, images, record_paths[:2], [], cohort="c", subject="01")
    with pytest.raises(ValueError, match="inside NBV jobs, not GBV"):
        runner.analyse_subject(
            "GBV", variants, images, record_paths, record_paths, cohort="c", subject="01", iqm_record_paths=record_paths
        )


@pytest.mark.parametrize("prep_threads, reused", [(1, True), (2, False)])
def test_full_image_reuses_the_preparation_brain_mask(tmp_path, monkeypatch, prep_threads, reused):
    """The defacing preparation's mask of the same T1w replaces the backend only at the same thread count."""
    from defacebench import brain

    monkeypatch.setattr(brain, "_KNOWN_MASKS", {})
    backend_calls = []

    def backend(img, threshold=0.5):
        backend_calls.append(img.shape)
        return np.ones(img.shape[:3], bool)

    monkeypatch.setattr(brain, "deepbet_mask", backend)
    module = types.ModuleType("fake_brain_arm")
    module.volume = lambda images, **settings: {
        # weighted by the voxels: a mask in the wrong orientation gives another value
        "value": float(
            (brain.extract_brain(images["T1w"], backend="deepbet") * np.asarray(images["T1w"].dataobj)).sum()
        ),
        "backend": "fake",
    }
    monkeypatch.setitem(sys.modules, "fake_brain_arm", module)
    monkeypatch.setitem(runner.ARMS, "NBV", ("fake_brain_arm", "volume"))

    data = np.arange(1000).reshape(10, 10, 10) % 97 + 1
    affine = np.diag([-10.0, 10.0, 10.0, 1.0])  # LAS on disk: the mask is reoriented, not just copied
    t1 = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), t1)
    mask = np.zeros((10, 10, 10), bool)
    mask[1:9, 1:9, 0:8] = True  # 512 voxels of 1 ml
    prep = tmp_path / "prep"
    prep.mkdir()
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), prep / "brain_mask.nii.gz")
    (prep / "preparation.json").write_text(
        json.dumps({"brain_extraction": {"backend": "deepbet", "threads": prep_threads}})
    )

    [record] = run("NBV", {"T1w": t1}, threads=1, preparation_dir=prep)
    assert record["status"] == "ok"
    if reused:
        assert record["value"] == float((data * mask).sum()) and backend_calls == []
        assert record["details"]["brain_mask_reused_from"] == str(prep / "brain_mask.nii.gz")
    else:
        assert record["value"] == float(data.sum()) and backend_calls == [(10, 10, 10)]
        assert "brain_mask_reused_from" not in record["details"]
    # the offer ends with the analysis: a later one in the same process runs the backend, uncredited
    calls_before = len(backend_calls)
    [later] = run("NBV", {"T1w": t1}, threads=1)
    assert later["value"] == float(data.sum()) and len(backend_calls) == calls_before + 1
    assert "brain_mask_reused_from" not in later["details"]
    assert brain._KNOWN_MASKS == {}


@pytest.fixture
def labelling_arm(fake_arms, monkeypatch):
    """GBV through the fake arm that returns a label map."""
    monkeypatch.setitem(runner.ARMS, "GBV", ("fake_arms", "labels"))


def test_label_map_is_kept_once_and_each_record_gets_its_own_dice(labelling_arm, tmp_path):
    data = np.zeros((10, 10, 10))
    data[2:4, 2:6, 2:6] = 4  # 32 voxels enhancing (core)
    data[4:6, 2:6, 2:6] = 2  # 32 voxels oedema
    t1 = write(tmp_path, "t1.nii.gz", data)
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    (truth_dir / "sub-01_truth.json").write_text(json.dumps({"gbv_ml": 1.0}))
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[2:4, 2:6, 2:6] = 1  # the same core, called necrosis
    nib.save(nib.Nifti1Image(truth, np.eye(4)), truth_dir / "sub-01_desc-tumour_dseg.nii.gz")
    out = tmp_path / "segmentations"
    records = run("GBV", {"T1w": t1}, truth_path=truth_dir / "sub-01_truth.json", segmentation_dir=out)
    name = "sub-01_variant-none_desc-tumour_dseg.nii.gz"
    assert [p.name for p in out.iterdir()] == [name]
    np.testing.assert_array_equal(np.asarray(nib.load(out / name).dataobj), data)
    core, whole = records
    assert core["details"]["segmentation"] == whole["details"]["segmentation"] == name
    assert core["details"]["dice_vs_truth"] == pytest.approx(1.0)  # core: labels 1, 3, 4
    assert whole["details"]["dice_vs_truth"] == pytest.approx(2 * 32 / 96)  # whole: every label


def test_failed_analysis_leaves_an_empty_segmentation_folder(labelling_arm, tmp_path):
    t1 = write(tmp_path, "t1.nii.gz", np.zeros((10, 10, 10)))
    out = tmp_path / "segmentations"
    records = run("GBV", {"T1w": t1}, segmentation_dir=out)
    assert records[0]["status"] == "failed" and "segmentation" not in records[0]["details"]
    assert out.is_dir() and not any(out.iterdir())
