"""Shareable defaced datasets (defacebench.sharing): what reaches the share, what does not, and the BIDS validator.

A tiny BIDS dataset is built once per module and defaced with the real
QuickShear (brain masks known from the synthetic head, so no brain extraction
runs); the share step then reads those outputs as it reads a study's.
"""

import hashlib
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from defacebench import io
from defacebench.deface import deface_subject
from defacebench.sharing import (
    ShareConfigError,
    ShareError,
    ValidatorUnavailable,
    build_share,
    run_validator,
    share_options,
    voxel_digest,
)
from defacebench.sharing import build as share_build
from defacebench.sharing import validator as share_validator

from test_deface import _synthetic_head

SIDECAR = {
    "PatientName": "Doe^John",
    "PatientBirthDate": "19700101",
    "AcquisitionDate": "2024-05-01",
    "InstitutionName": "Some Hospital",
    "DeviceSerialNumber": "12345",
    "RepetitionTime": 2.3,
    "MagneticFieldStrength": 3,
}


def _tree_digest(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _save(img, path: Path, sidecar: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    io.save_image(img, path)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Source dataset, QuickShear outputs and records of a 3-subject cohort (a 4th subject outside it).

    sub-01: T1w shared; its T2w's record says a face is still detected (left out).
    sub-02: T1w cut with a negative buffer, so the brain is cut (left out unless keep_flagged).
    sub-03: T1w with no face to remove (defacing changes nothing: left out), FLAIR not a NIfTI (defacing fails).
    """
    root = tmp_path_factory.mktemp("sharing")
    src = root / "source"
    img, brain, _ = _synthetic_head()
    data = np.asanyarray(img.dataobj)
    (src / "derivatives/masks").mkdir(parents=True)
    io.write_json(
        {
            "Name": "Tiny test cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["A. Tester"],
            "DatasetDOI": "doi:10.0000/tiny",
        },
        src / "dataset_description.json",
    )
    (src / "README").write_text("Tiny dataset: sub-01 and sub-02 scanned at Some Hospital.\n")
    (src / "participants.tsv").write_text(
        "participant_id\tage\tsex\tgroup\tnote\n"
        "sub-01\t34\tF\tcontrol\tneighbour of the PI\n"
        "sub-02\t71\tM\tpatient\tn/a\nsub-03\t52\tF\tpatient\tn/a\n"
        "sub-04\t29\tM\tcontrol\tn/a\n"
    )
    (src / "participants.json").write_text(json.dumps({"age": {"Units": "years"}, "group": {"Description": "arm"}}))
    (src / "task-rest_bold.json").write_text(json.dumps({"TaskName": "rest", "RepetitionTime": 2.0}))
    images = {"01": {}, "02": {}, "03": {}}
    images["01"]["T1w"] = _save(img, src / "sub-01/anat/sub-01_T1w.nii.gz", SIDECAR)
    images["01"]["T2w"] = _save(
        nib.Nifti1Image((data * 2).astype(np.int16), img.affine),
        src / "sub-01/anat/sub-01_T2w.nii.gz",
        {"EchoTime": 0.1},
    )
    bold = nib.Nifti1Image(
        np.repeat(data[::4, ::4, ::4, None], 3, axis=3).astype(np.int16), np.diag([6.0, 4.8, 4.0, 1.0])
    )
    _save(bold, src / "sub-01/func/sub-01_task-rest_bold.nii.gz", {"TaskName": "rest", "PatientName": "Doe^John"})
    (src / "sub-01/sub-01_scans.tsv").write_text("filename\tacq_time\nanat/sub-01_T1w.nii.gz\t2024-05-01T10:00:00\n")
    images["02"]["T1w"] = _save(img, src / "sub-02/anat/sub-02_T1w.nii.gz", SIDECAR)
    no_face = np.where(brain, data, 0).astype(np.int16)  # a skull-stripped head: nothing for QuickShear to cut
    images["03"]["T1w"] = _save(nib.Nifti1Image(no_face, img.affine), src / "sub-03/anat/sub-03_T1w.nii.gz")
    images["03"]["FLAIR"] = src / "sub-03/anat/sub-03_FLAIR.nii.gz"
    images["03"]["FLAIR"].write_bytes(b"not a NIfTI image")
    _save(img, src / "sub-04/anat/sub-04_T1w.nii.gz")
    _save(nib.Nifti1Image(brain.astype(np.uint8), img.affine), src / "derivatives/masks/sub-01_mask.nii.gz")

    results = root / "results"
    defaced_dirs, records = {}, {}
    for subject, buffer_mm in (("01", 10.0), ("02", -25.0), ("03", 10.0)):
        defaced_dirs[subject] = results / f"defaced/tiny/quickshear/sub-{subject}"
        record = deface_subject(
            "quickshear",
            images[subject],
            defaced_dirs[subject] / "anat",
            options={"buffer_mm": buffer_mm},
            prep={"brain_mask": brain},
        )
        if subject == "01":
            # the frontal render's face detector (tested in test_privacy) found a face on this defaced T2w
            record["images"]["T2w"].update(face_detected_full=True, face_detected_defaced=True)
        records[subject] = io.write_json(record, results / f"records/tiny/deface/sub-{subject}_method-quickshear.json")
    return {
        "source": src,
        "images": images,
        "defaced_dirs": defaced_dirs,
        "records": records,
        "results": results,
        "before": _tree_digest(src),
    }


def _share(study, name, subjects=("01", "02", "03"), **options):
    results = study["results"]
    out = results / f"share/tiny/{name}/quickshear"
    images = {s: study["images"][s] for s in subjects}
    outcome = build_share(
        source_root=study["source"],
        images=images,
        defaced_dirs=study["defaced_dirs"],
        records=study["records"],
        method="quickshear",
        out_dir=out,
        cohort="tiny",
        options=options,
        key_path=results / f"share_keys/tiny/{name}_relabel.tsv",
        report_path=results / f"share/tiny/{name}/quickshear_report.json",
    )
    return outcome


@pytest.fixture(scope="module")
def default_share(study):
    """The share with default options (the validator runs when found)."""
    return _share(study, "default")


def test_recorded_outcomes_are_the_ones_the_share_must_handle(study):
    records = {s: io.read_json(p) for s, p in study["records"].items()}
    assert records["01"]["status"] == "ok" and records["02"]["images"]["T1w"]["brain_voxels_changed_fraction"] > 0.05
    assert records["03"]["images"]["T1w"]["voxels_changed"] == 0
    assert records["03"]["images"]["FLAIR"]["status"] == "failed"


def test_no_full_image_and_no_identifying_key_reaches_the_share(study, default_share):
    share = default_share.out_dir
    source_digests = {
        voxel_digest(nib.load(str(p))) for p in study["source"].rglob("*.nii.gz") if p.name != "sub-03_FLAIR.nii.gz"
    }
    shared = sorted(share.rglob("*.nii*"))
    assert [p.relative_to(share).as_posix() for p in shared] == ["sub-01/anat/sub-01_T1w.nii.gz"]
    for path in shared:
        assert voxel_digest(nib.load(str(path))) not in source_digests
        assert voxel_digest(nib.load(str(path))) == voxel_digest(
            nib.load(str(study["defaced_dirs"]["01"] / "anat" / path.name))
        )
        assert nib.load(str(path)).header["descrip"].tobytes().strip(b"\x00") == b""
    assert b"John Doe" in nib.load(str(study["images"]["01"]["T1w"])).header["descrip"].tobytes()
    sidecar = json.loads((share / "sub-01/anat/sub-01_T1w.json").read_text())
    assert sidecar == {"RepetitionTime": 2.3, "MagneticFieldStrength": 3}
    assert not any("Patient" in p.read_text() or "Hospital" in p.read_text() for p in share.rglob("*.json"))
    participants = (share / "participants.tsv").read_text().splitlines()
    assert participants == ["participant_id", "sub-01"]
    assert json.loads((share / "participants.json").read_text()) == {}
    assert _tree_digest(study["source"]) == study["before"]  # the source is byte-identical
    assert share.stat().st_mode & 0o777 == 0o755


def test_left_out_images_and_files_are_listed(default_share):
    readme = (default_share.out_dir / "README").read_text()
    left_out = {e["path"]: e["reason"] for e in default_share.report["left_out"]}
    assert "face is still detected" in left_out["sub-01/anat/sub-01_T2w.nii.gz"]
    assert "brain's voxels" in left_out["sub-02/anat/sub-02_T1w.nii.gz"]
    assert "voxels equal the full image's" in left_out["sub-03/anat/sub-03_T1w.nii.gz"]
    assert left_out["sub-03/anat/sub-03_FLAIR.nii.gz"].startswith("defacing failed (input")
    assert "may show a face" in left_out["sub-01/func/sub-01_task-rest_bold.nii.gz"]
    assert "dates" in left_out["sub-01/sub-01_scans.tsv"]
    assert left_out["sub-04/"] == "subject not in the cohort" and "derivatives/" in left_out
    assert {"sub-02/", "sub-03/"} <= set(left_out)  # every image left out: no folder, no participants row
    for path in left_out:
        assert f"- {path}: " in readme
    assert not (default_share.out_dir / "sub-02").exists() and not (default_share.out_dir / "sub-01/func").exists()
    assert "face detection did not run" in readme  # the records hold no render: said, not hidden


def test_dataset_description_has_the_provenance(default_share):
    desc = json.loads((default_share.out_dir / "dataset_description.json").read_text())
    assert desc["License"] == "CC0" and desc["BIDSVersion"] == "1.9.0" and desc["DatasetType"] == "raw"
    assert desc["Authors"] == ["A. Tester"] and desc["Name"].startswith("Tiny test cohort")
    defacebench_entry, method_entry = desc["GeneratedBy"][:2]
    assert defacebench_entry["Name"] == "defacebench" and defacebench_entry["Version"]
    assert method_entry["Name"] == "quickshear" and "buffer_mm" in method_entry["Description"]
    assert "quickshear 1.2" in method_entry["Description"]  # the backend that ran, from the record
    assert desc["SourceDatasets"][0]["DOI"] == "doi:10.0000/tiny"
    assert "DatasetDOI" not in desc  # the source's DOI is not the share's
    assert (default_share.out_dir / "CHANGES").read_text().startswith("1.0.0 ")
    report_path = default_share.out_dir.parent / "quickshear_report.json"
    assert io.read_json(report_path)["images_shared"] == ["sub-01/anat/sub-01_T1w.nii.gz"]


def test_relabelling_keeps_the_key_outside_and_consistent(study):
    outcome = _share(
        study,
        "relabel",
        relabel=True,
        keep_flagged=["brain_changed"],
        validate=False,
        participants_keep=["participant_id", "group"],
        copy=["sub-01/func/*"],
    )
    share = outcome.out_dir
    key_path = study["results"] / "share_keys/tiny/relabel_relabel.tsv"
    assert key_path.exists() and share not in key_path.parents and not list(share.rglob("*relabel*"))
    assert key_path.stat().st_mode & 0o077 == 0  # the data owner's alone
    rows = [line.split("\t") for line in key_path.read_text().splitlines()[1:]]
    key = {source.removeprefix("sub-"): (new.removeprefix("sub-"), shared) for new, source, shared in rows}
    assert {s: shared for s, (_, shared) in key.items()} == {"01": "yes", "02": "yes", "03": "no"}
    for subject in ("01", "02"):
        new = key[subject][0]
        shared_t1 = share / f"sub-{new}/anat/sub-{new}_T1w.nii.gz"
        defaced_t1 = study["defaced_dirs"][subject] / f"anat/sub-{subject}_T1w.nii.gz"
        assert voxel_digest(nib.load(str(shared_t1))) == voxel_digest(nib.load(str(defaced_t1)))
    participants = (share / "participants.tsv").read_text().splitlines()
    assert participants[0] == "participant_id\tgroup"
    assert participants[1:] == sorted(f"sub-{key[s][0]}\t{g}" for s, g in (("01", "control"), ("02", "patient")))
    originals = [share_build._label_pattern(s) for s in ("01", "02", "03", "04")]
    for path in share.rglob("*"):
        text = path.relative_to(share).as_posix() + (
            path.read_text() if path.suffix in (".json", ".tsv", "") and path.is_file() else ""
        )
        # whole labels only: a random label may start with "01"
        assert not any(pattern.search(text) for pattern in originals), path
    new01 = key["01"][0]
    bold_json = json.loads((share / f"sub-{new01}/func/sub-{new01}_task-rest_bold.json").read_text())
    assert bold_json == {"TaskName": "rest"}  # copied on request, still scrubbed
    assert any(e["flags"] == ["brain_changed"] for e in outcome.report["kept_flagged"])
    assert _tree_digest(study["source"]) == study["before"]


def test_a_failed_build_publishes_nothing_and_keeps_the_old_share(study, monkeypatch):
    first = _share(study, "atomic", subjects=("01",), validate=False)
    before = _tree_digest(first.out_dir)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(share_build, "write_participants", broken)
    with pytest.raises(OSError, match="disk full"):
        _share(study, "atomic", subjects=("01",), validate=False)
    assert _tree_digest(first.out_dir) == before
    assert [p.name for p in first.out_dir.parent.iterdir() if p.name.startswith(".")] == []


def test_validate_true_without_a_validator_is_an_error(study, monkeypatch):
    monkeypatch.setattr(share_validator, "find_validator", lambda: (None, "bids-validator not found (test)"))
    with pytest.raises(ValidatorUnavailable, match="share.validate is true"):
        _share(study, "required", subjects=("01",), validate=True)
    assert not (study["results"] / "share/tiny/required/quickshear").exists()
    auto = _share(study, "auto", subjects=("01",), validate="auto")
    assert not auto.validation.ran and "not found" in auto.validation.reason
    assert auto.report["validation"]["reason"] == "bids-validator not found (test)"


def test_bad_share_config_names_the_key():
    with pytest.raises(ShareConfigError, match="share.relabel"):
        share_options({"relabel": "yes"}, "quickshear")
    with pytest.raises(ShareConfigError, match="share.keep_flagged"):
        share_options({"keep_flagged": ["nose"]}, "quickshear")
    with pytest.raises(ShareConfigError, match="share.relabl"):
        share_options({"relabl": True}, "quickshear")
    with pytest.raises(ShareConfigError, match="share.method"):
        share_options({})
    with pytest.raises(ShareConfigError, match="share.participants_keep"):
        share_options({"participants_keep": ["age"]}, "quickshear")
    with pytest.raises(ShareConfigError, match="share.validate"):
        share_options({"validate": 1}, "quickshear")


def test_a_share_inside_the_source_is_refused(study):
    with pytest.raises(ShareError, match="read-only"):
        build_share(
            source_root=study["source"],
            images=study["images"],
            defaced_dirs=study["defaced_dirs"],
            records=study["records"],
            method="quickshear",
            out_dir=study["source"] / "derivatives/share",
        )
    assert _tree_digest(study["source"]) == study["before"]


# --- the official BIDS validator ----------------------------------------------------------------------


def test_the_validator_passes_the_share(default_share, validator):
    result = default_share.validation
    assert result.ran, result.reason
    assert result.errors == [], result.summary()
    assert default_share.report["validation"]["passed"] is True


def test_the_validator_fails_a_broken_dataset(default_share, validator, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(default_share.out_dir, broken)
    (broken / "dataset_description.json").unlink()
    (broken / "sub-01/anat/sub-01_T1w.nii.gz").rename(broken / "sub-01/anat/sub-01_headscan.nii.gz")
    result = run_validator(broken, validator)
    assert result.ran and not result.passed
    assert {"DATASET_DESCRIPTION_JSON_MISSING", "NOT_INCLUDED"} <= {e.key for e in result.errors}, result.summary()
    assert any("sub-01_headscan" in f for e in result.errors for f in e.files)


def test_paths_relative_to_the_working_folder_as_the_workflow_gives_them(study, monkeypatch):
    """A simulated cohort's root and images are relative to the workflow's folder (results/cohorts/...)."""
    root = study["source"].parent
    monkeypatch.chdir(root)
    images = {"01": {m: p.relative_to(root) for m, p in study["images"]["01"].items()}}
    outcome = build_share(
        source_root=Path("source"),
        images=images,
        defaced_dirs={"01": Path("results/defaced/tiny/quickshear/sub-01")},
        records=study["records"],
        method="quickshear",
        out_dir=Path("results/share/tiny/relative/quickshear"),
        options={"validate": False},
    )
    assert outcome.report["images_shared"] == ["sub-01/anat/sub-01_T1w.nii.gz"]
    assert "sub-01/anat/sub-01_T1w.json" not in {e["path"] for e in outcome.report["left_out"]}


@pytest.mark.parametrize("keep_flagged", [[], ["unchanged"]])
def test_a_scan_without_a_face_is_no_face_not_a_failed_defacing(study, tmp_path, keep_flagged):
    """A subject the defacing step recorded as no_face: listed as "no face to remove", shared on request."""
    reason = "head tissue in the face zone 0.0 % of the brain's volume (< 5 %): no face"
    out = tmp_path / "defaced" / "sub-03"
    record = deface_subject(
        "quickshear", study["images"]["03"], out / "anat", prep={"face_check": {"has_face": False, "reason": reason}}
    )
    assert record["status"] == "no_face" and record["images"]["T1w"]["status"] == "no_face"
    outcome = build_share(
        source_root=study["source"],
        images={"03": study["images"]["03"]},
        defaced_dirs={"03": out},
        records={"03": io.write_json(record, tmp_path / "sub-03_method-quickshear.json")},
        method="quickshear",
        out_dir=tmp_path / "share",
        cohort="tiny",
        options={"keep_flagged": keep_flagged, "validate": False},
        key_path=tmp_path / "key.tsv",
        report_path=tmp_path / "share_report.json",
    )
    left_out = {e["path"]: e["reason"] for e in outcome.report["left_out"]}
    assert left_out["sub-03/anat/sub-03_FLAIR.nii.gz"].startswith("defacing failed (input")  # unreadable: a failure
    if keep_flagged:
        assert outcome.report["images_shared"] == ["sub-03/anat/sub-03_T1w.nii.gz"]
        assert outcome.report["kept_flagged"] == [{"path": "sub-03/anat/sub-03_T1w.nii.gz", "flags": ["unchanged"]}]
    else:
        why = left_out["sub-03/anat/sub-03_T1w.nii.gz"]
        assert why.startswith("privacy check failed: no face to remove (head tissue in the face zone")
        assert "defacing failed" not in why


# --- what must never reach a share, each shown by a case that would leak without the check ---------------


def test_header_text_left_in_a_defaced_image_is_cleared_in_the_share(study, tmp_path):
    """A defacing output that still carries identifying header text (a command-template method) is rewritten."""
    defaced = tmp_path / "defaced/sub-01"
    shutil.copytree(study["defaced_dirs"]["01"], defaced)
    t1w = defaced / "anat/sub-01_T1w.nii.gz"
    img = nib.load(str(t1w))
    dirty = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header.copy())
    dirty.header["descrip"] = b"Doe^John 19700101"
    dirty.header["db_name"] = b"Some Hospital"
    dirty.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"PatientName=Doe^John"))
    io.save_image(dirty, t1w)
    assert b"Doe^John" in nib.load(str(t1w)).header["descrip"].tobytes()
    outcome = build_share(
        source_root=study["source"],
        images={"01": {"T1w": study["images"]["01"]["T1w"]}},
        defaced_dirs={"01": defaced},
        records=study["records"],
        method="quickshear",
        out_dir=tmp_path / "share",
        options={"validate": False},
    )
    shared = nib.load(str(outcome.out_dir / "sub-01/anat/sub-01_T1w.nii.gz"))
    for name in io.IDENTIFYING_HEADER_FIELDS:
        assert shared.header[name].tobytes().strip(b"\x00 ") == b"", name
    assert len(shared.header.extensions) == 0
    assert voxel_digest(shared) == voxel_digest(nib.load(str(t1w)))  # the same voxels, only the text cleared
    assert shared.get_data_dtype() == nib.load(str(t1w)).get_data_dtype()


def test_identifying_keys_left_in_a_defaced_sidecar_are_removed_and_checked(study, tmp_path, monkeypatch):
    """A defacing output whose sidecar still names the patient: the share removes the keys; and should that
    scrubbing ever break, the last check refuses to publish (nothing under the final name)."""
    defaced = tmp_path / "defaced/sub-01"
    shutil.copytree(study["defaced_dirs"]["01"], defaced)
    (defaced / "anat/sub-01_T1w.json").write_text(json.dumps(SIDECAR))

    def share(name):
        return build_share(
            source_root=study["source"],
            images={"01": {"T1w": study["images"]["01"]["T1w"]}},
            defaced_dirs={"01": defaced},
            records=study["records"],
            method="quickshear",
            out_dir=tmp_path / name,
            options={"validate": False},
        )

    outcome = share("share")
    assert json.loads((outcome.out_dir / "sub-01/anat/sub-01_T1w.json").read_text()) == {
        "RepetitionTime": 2.3,
        "MagneticFieldStrength": 3,
    }
    monkeypatch.setattr(share_build.io, "scrub_sidecar", lambda meta: dict(meta))
    with pytest.raises(ShareError, match="identifying keys.*PatientName"):
        share("broken")
    assert not (tmp_path / "broken").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defaced", "share"]  # no partial folder either


def test_a_failed_or_missing_defacing_never_shares_the_file_on_disk(study, tmp_path):
    """A record saying the defacing failed, or no record at all: the image is left out and listed, even though
    a defaced file sits in the folder (a stale output of an earlier run), and the reason names no user folder."""
    source_t1w = study["images"]["01"]["T1w"]
    failed = {
        "status": "failed",
        "failed_stage": "deface",
        "message": f"quickshear crashed on {source_t1w}",
        "images": {},
    }
    outcome = build_share(
        source_root=study["source"],
        images={"01": {"T1w": source_t1w}, "02": study["images"]["02"]},
        defaced_dirs=study["defaced_dirs"],
        records={"01": failed, "02": None},
        method="quickshear",
        out_dir=tmp_path / "share",
        report_path=tmp_path / "report.json",
        options={"validate": False},
    )
    assert (study["defaced_dirs"]["01"] / "anat/sub-01_T1w.nii.gz").exists()
    left_out = {e["path"]: e["reason"] for e in outcome.report["left_out"]}
    assert left_out["sub-01/anat/sub-01_T1w.nii.gz"] == (
        "defacing failed (deface: quickshear crashed on <source>/sub-01/anat/sub-01_T1w.nii.gz)"
    )
    assert left_out["sub-02/anat/sub-02_T1w.nii.gz"] == "no defacing record"
    assert outcome.report["images_shared"] == [] and not list(outcome.out_dir.rglob("*.nii*"))
    readme = (outcome.out_dir / "README").read_text()
    assert "- sub-01/anat/sub-01_T1w.nii.gz: defacing failed (deface: " in readme
    assert str(study["source"]) not in readme + json.dumps(outcome.report["left_out"])


def test_a_cohort_with_nothing_to_share_says_so_and_is_not_validated(study, tmp_path, monkeypatch):
    """Every image left out (sub-03: no face to remove, and a failed FLAIR): a folder without subjects is
    not BIDS (the validator's QUICK_VALIDATION_FAILED), so it is written with its README and report, marked
    empty, and not validated; validate: true does not turn it into an error."""
    monkeypatch.setattr(share_validator, "find_validator", lambda: (None, "bids-validator not found (test)"))
    outcome = build_share(
        source_root=study["source"],
        images={"03": study["images"]["03"]},
        defaced_dirs=study["defaced_dirs"],
        records=study["records"],
        method="quickshear",
        out_dir=tmp_path / "share",
        report_path=tmp_path / "report.json",
        options={"validate": True},
    )
    assert outcome.report["status"] == share_build.EMPTY_SHARE_STATUS
    assert not outcome.validation.ran and outcome.validation.reason == share_build.EMPTY_SHARE_REASON
    assert sorted(p.name for p in outcome.out_dir.iterdir()) == [
        "CHANGES",
        "README",
        "dataset_description.json",
        "participants.json",
        "participants.tsv",
    ]
    assert (outcome.out_dir / "participants.tsv").read_text() == "participant_id\n"
    readme = (outcome.out_dir / "README").read_text()
    assert "Nothing to share" in readme and "- sub-03/anat/sub-03_T1w.nii.gz: privacy check failed" in readme
    assert io.read_json(tmp_path / "report.json")["status"] == share_build.EMPTY_SHARE_STATUS


def test_the_validator_rejects_a_share_without_subjects(default_share, validator, tmp_path):
    """Why an empty share is not validated: the validator calls a folder without subjects no BIDS dataset."""
    empty = tmp_path / "empty"
    shutil.copytree(default_share.out_dir, empty, ignore=shutil.ignore_patterns("sub-*"))
    (empty / "participants.tsv").write_text("participant_id\n")
    result = run_validator(empty, validator)
    assert "QUICK_VALIDATION_FAILED" in {e.key for e in result.errors}, result.summary()
