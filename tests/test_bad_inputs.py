"""Bad inputs become recorded failures (stage, and a reason naming the file and the defect).

Fast unit tests of :func:`defacebench.io.validate_input_image` on every case of
the bad-input corpus (``tests/bad_inputs.py``), of the defacing step's handling
of them, and one run of the whole workflow on the corpus (NBV + QuickShear).
"""

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from defacebench import io
from defacebench.records import AnalysisFailure

from bad_inputs import CASES, corpus_digest, write_bids_corpus
from workflow_runs import snakemake

REPO = Path(__file__).resolve().parents[1]


def _small_head(shape=(24, 28, 24)) -> nib.Nifti1Image:
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    radius = np.sqrt((((grid - centre) / (np.array(shape)[:, None, None, None] / 2.4)) ** 2).sum(0))
    data = np.where(radius < 1, 400 + 300 * (radius < 0.7), 0).astype(np.int16)
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source_T1w.nii.gz"
    nib.save(_small_head(), str(path))
    return path


@pytest.mark.parametrize("subject", [s for s, case in CASES.items() if case.unit])
def test_validator_names_file_and_defect(subject, source, tmp_path):
    root = write_bids_corpus(tmp_path / "bids", source, {}, cases=[subject])
    [t1w] = (root / f"sub-{subject}" / "anat").glob("*T1w*")
    with pytest.raises(io.BadInputImage) as raised:
        io.validate_input_image(t1w)
    failure = raised.value
    assert isinstance(failure, AnalysisFailure) and failure.stage == "input"
    assert failure.reason.startswith(t1w.name + ": ")
    for words in CASES[subject].unit:
        assert words in failure.reason, failure.reason


def test_validator_accepts_good_images_however_stored(source, tmp_path):
    """gzip data named .nii, plain data named .nii.gz, a trailing singleton 4th dimension: all one volume."""
    good = nib.load(str(source))
    expected = np.asanyarray(good.dataobj)
    raw = gzip.decompress(source.read_bytes())
    (tmp_path / "gz_named.nii").write_bytes(source.read_bytes())
    (tmp_path / "plain_named.nii.gz").write_bytes(raw)
    nib.save(nib.Nifti1Image(expected[..., None], good.affine), str(tmp_path / "singleton.nii.gz"))
    for name in ("gz_named.nii", "plain_named.nii.gz", "singleton.nii.gz"):
        img = io.validate_input_image(tmp_path / name)
        assert img.shape == expected.shape and np.array_equal(np.asanyarray(img.dataobj), expected)
        assert np.allclose(img.affine, good.affine)


def test_validator_keeps_scaling_and_counts_nonfinite(tmp_path):
    data = np.arange(24 * 28 * 24, dtype=np.float32).reshape(24, 28, 24)
    scaled = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    scaled.header.set_data_dtype(np.int16)  # nibabel stores it with a scale factor
    nib.save(scaled, str(tmp_path / "scaled.nii.gz"))
    img = io.validate_input_image(tmp_path / "scaled.nii.gz")
    assert img.dataobj.slope != 1.0 and np.allclose(np.asanyarray(img.dataobj), data, atol=img.dataobj.slope)
    data[0, 0, 0] = np.nan
    data[1, 0, 0] = -np.inf
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "nan.nii.gz"))
    with pytest.raises(io.BadInputImage, match="1 NaN, 1 -Inf voxels"):
        io.validate_input_image(tmp_path / "nan.nii.gz")
    assert io.validate_input_image(tmp_path / "nan.nii.gz", allow_nonfinite=True).shape == data.shape


def test_validator_missing_file(tmp_path):
    with pytest.raises(io.BadInputImage, match="does not exist"):
        io.validate_input_image(tmp_path / "sub-x_T1w.nii.gz")


def test_deface_subject_records_bad_inputs_and_writes_its_folder(source, tmp_path):
    """Without running a method: every defect of the reference is a failed record, and the folder exists."""
    from defacebench.deface.run import deface_subject

    root = write_bids_corpus(tmp_path / "bids", source, {}, cases=["truncated", "brokenlink", "t2wonly"])
    for subject in ("truncated", "brokenlink"):
        [t1w] = (root / f"sub-{subject}" / "anat").glob("*T1w*")
        out = tmp_path / "out" / subject
        record = deface_subject("quickshear", {"T1w": t1w}, out, prep={"brain_mask_failure": ("input", "x")})
        assert out.is_dir() and record["status"] == "failed" and record["failed_stage"] == "input"
        assert record["message"].startswith(t1w.name) and CASES[subject].deface[2] in record["message"]
    out = tmp_path / "out" / "t2wonly"
    record = deface_subject("quickshear", {}, out, prep={"brain_mask_failure": ("input", "no T1w image")})
    assert out.is_dir() and record["message"] == "no image to deface (no T1w image)"


def test_integrity_ignores_nonfinite_voxels():
    from defacebench.integrity import changed, integrity

    full = np.ones((10, 10, 10), np.float32)
    full[4:6, 4:6, 4:6] = np.nan
    full[0, 0, 0] = np.inf
    defaced = full.copy()
    defaced[:, :, :2] = 0  # the "face" slab removed, with its Inf voxel
    brain = np.zeros(full.shape, bool)
    brain[3:7, 3:7, 3:7] = True
    assert not changed(full, full.copy()).any()  # NaN == NaN here, inf == inf
    record = integrity(full, defaced, brain, None)
    assert record["brain_voxels_changed"] == 0 and record["brain_voxels_changed_fraction"] == 0.0
    assert record["brain_voxels_nonfinite"] == 8 and record["brain_voxels"] == 64 - 8
    assert record["nonfinite_voxels"] == 9 and record["voxels_changed_total"] == 10 * 10 * 2 - 1


def _rotated(img: nib.Nifti1Image, degrees: float) -> nib.Nifti1Image:
    """The same voxels with the affine rotated by ``degrees`` about the z axis (an oblique acquisition)."""
    angle = np.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return nib.Nifti1Image(np.asanyarray(img.dataobj), rotation @ img.affine, img.header)


def test_oblique_input_is_warned_with_its_obliquity(tmp_path):
    head = _small_head()
    assert io.obliquity_degrees(head.affine) == 0.0
    assert io.oblique_warning("T1w", head) is None
    assert io.oblique_warning("T1w", _rotated(head, 0.5)) is None  # below OBLIQUE_WARNING_DEGREES
    assert io.obliquity_degrees(_rotated(head, 30).affine) == pytest.approx(30.0)
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(_rotated(head, 30), str(path))
    warning = io.oblique_warning("T1w", io.validate_input_image(path), path)
    assert warning.startswith("T1w is oblique by 30.0 degrees (sub-01_T1w.nii.gz): ")


def test_analysis_record_carries_the_oblique_warning(tmp_path, monkeypatch):
    """The runner puts the warning in the record's details, whatever the arm measured (a stand-in arm here)."""
    from types import SimpleNamespace

    from defacebench import runner

    arm = SimpleNamespace(normalised_brain_volume=lambda images, threads: {"value": 1.0, "backend": "stand-in"})
    monkeypatch.setattr(runner, "import_module", lambda name: arm)
    paths = {}
    for subject, degrees in (("straight", 0), ("oblique", 30)):
        paths[subject] = tmp_path / f"sub-{subject}_T1w.nii.gz"
        nib.save(_rotated(_small_head(), degrees), str(paths[subject]))
    [record] = runner.analyse(
        "NBV",
        {"T1w": paths["oblique"]},
        cohort="c",
        subject="oblique",
        variant="none",
        settings={"check_executable": False},  # read by the plan, not passed to the arm
    )
    assert record["status"] == "ok" and record["details"]["warnings"] == [
        io.oblique_warning("T1w", nib.load(paths["oblique"]), paths["oblique"])
    ]
    [record] = runner.analyse("NBV", {"T1w": paths["straight"]}, cohort="c", subject="straight", variant="none")
    assert "warnings" not in record["details"]


def test_image_above_the_size_limit_is_a_recorded_input_failure(source, tmp_path, monkeypatch):
    """The limit (config max_image_mb, passed to jobs as DEFACEBENCH_MAX_IMAGE_MB) refuses an image before
    it fills memory: on disk, or once decompressed (a small .nii.gz that inflates past it)."""
    voxel_bytes = int(np.prod(_small_head().shape)) * 2  # int16
    monkeypatch.setenv("DEFACEBENCH_MAX_IMAGE_MB", str(voxel_bytes / 2 / 2**20))
    with pytest.raises(AnalysisFailure) as err:
        io.validate_input_image(source)  # gzip: small on disk, too large once decompressed
    assert (
        err.value.stage == "input"
        and "source_T1w.nii.gz: too large: more than the limit of 0.015 MB of image data once decompressed (max_image_mb in the config)"
        in err.value.reason
    )
    plain = tmp_path / "sub-01_T1w.nii"
    nib.save(_small_head(), str(plain))
    with pytest.raises(
        AnalysisFailure, match=r"sub-01_T1w.nii: too large: 0.031 MB on disk, above the limit of 0.015 MB of image data"
    ):
        io.validate_input_image(plain)
    monkeypatch.setenv("DEFACEBENCH_MAX_IMAGE_MB", str(voxel_bytes * 2 / 2**20))
    assert io.validate_input_image(source).shape == _small_head().shape
    monkeypatch.delenv("DEFACEBENCH_MAX_IMAGE_MB")
    assert io.max_image_bytes() == io.DEFAULT_MAX_IMAGE_MB * 2**20


def test_gzip_members_and_padding_are_read_whole(tmp_path):
    """The bounded decompression reads every gzip member (as gzip.decompress does) and refuses a truncated one."""
    raw = _small_head().to_bytes()
    path = tmp_path / "sub-01_T1w.nii.gz"
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]) + b"\x00" * 8)
    assert np.array_equal(np.asanyarray(io.validate_input_image(path).dataobj), np.asanyarray(_small_head().dataobj))
    path.write_bytes(gzip.compress(raw)[:-100])
    with pytest.raises(AnalysisFailure, match="truncated gzip data"):
        io.validate_input_image(path)


@pytest.mark.slow
def test_workflow_records_every_bad_input_and_writes_the_good_tables(real_bids, tmp_path):
    """The whole workflow on the corpus: it completes, one failure per defect, the controls' tables written."""
    ixi012, ixi013 = (real_bids / f"sub-{s}" / "anat" / f"sub-{s}_T1w.nii.gz" for s in ("IXI012", "IXI013"))
    # two good T1w for the agreement table: IXI012 copied, and IXI013's as the mismatched-grid subject's T1w
    # (its FLAIR is the defect); the other cases are made from IXI012 and fail before any long step
    bids = write_bids_corpus(tmp_path / "bids", ixi012, {"IXI012": ixi012}, sources={"mismatch": ixi013})
    before = corpus_digest(bids)
    results = tmp_path / "results"
    config = tmp_path / "bad.yaml"
    config.write_text(
        "study: badinputs\n"
        f"results: {results}\n"
        "methods: [quickshear]\n"
        "report: false\n"  # the tables are what this test checks; the report has tests of its own
        "cohorts:\n"
        "  - name: bad\n"
        "    source: bids\n"
        f"    bids_root: {bids}\n"
        "    modalities: [T1w, FLAIR]\n"  # FLAIR: the mismatched-grid subject's second image
        "    outcomes: [NBV]\n"
    )
    result = snakemake("--cores", "2", "--configfile", str(config))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    records = pd.read_csv(results / "tables/bad_records.tsv", sep="\t", dtype={"subject": str})
    for subject, case in CASES.items():
        deface = json.loads((results / f"records/bad/deface/sub-{subject}_method-quickshear.json").read_text())
        status, stage, words = case.deface
        assert (deface["status"], deface["failed_stage"]) == (status, stage), (subject, deface["message"])
        assert words in deface["message"], (subject, deface["message"])
        [full] = records[(records.subject == subject) & (records.variant == "none")].to_dict("records")
        status, stage, words = case.analysis
        message = full["message"] if isinstance(full["message"], str) else ""
        assert (full["status"], full["failed_stage"] if status == "failed" else "") == (status, stage), (
            subject,
            message,
        )
        assert words in message, (subject, message)
    nonfinite = json.loads((results / "records/bad/deface/sub-nonfinite_method-quickshear.json").read_text())
    t1w = nonfinite["images"]["T1w"]
    assert t1w["brain_voxels_changed"] == 0 and t1w["brain_voxels_nonfinite"] > 0  # no false alarm
    mismatch = json.loads((results / "records/bad/deface/sub-mismatch_method-quickshear.json").read_text())
    assert mismatch["images"]["T1w"]["status"] == "ok" and mismatch["images"]["FLAIR"]["failed_stage"] == "input"

    # the controls analysed as before: NBV of a real head, on both variants (IXI012's full image: 1646 ml)
    good = records[records.subject.isin(["IXI012", "mismatch"])]
    assert len(good) == 4 and (good.status == "ok").all(), good[["subject", "variant", "message"]]
    assert good.value.between(1000, 2000).all()
    agreement = pd.read_csv(results / "tables/bad_agreement.tsv", sep="\t").set_index("method")
    assert agreement.loc["quickshear", "n_complete"] == 2
    assert (results / "tables/summary.txt").exists()
    assert corpus_digest(bids) == before  # inputs untouched
