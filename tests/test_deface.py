"""Defacing methods: correctness on synthetic grids, output hygiene, orchestration, real heads."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from defacebench import io
from defacebench.deface import METHODS, deface_image, deface_subject
from defacebench.deface.quickshear import keep_mask
from defacebench.integrity import changed as voxel_changed
from defacebench.records import AnalysisFailure


def _reorient(img, codes):
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(img.affine), nib.orientations.axcodes2ornt(codes)
    )
    return img.as_reoriented(ornt)


def _synthetic_head(shape=(64, 96, 80), dtype=np.int16):
    """A non-cubic RAS 'head': ellipsoid scalp, ellipsoid brain up and back, a face block in front and below."""
    g = np.indices(shape).astype(float)
    c = np.array(shape, float)[:, None, None, None] / 2

    def ell(centre, radii):
        return ((((g - np.array(centre)[:, None, None, None]) / np.array(radii)[:, None, None, None]) ** 2).sum(0)) < 1

    head = ell(c[:, 0, 0, 0], np.array(shape) * 0.45)
    brain = ell(c[:, 0, 0, 0] + [0, -8, 12], [20, 28, 20])
    face = head & (g[1] > shape[1] * 0.62) & (g[2] < shape[2] * 0.5)
    face &= ~ell(c[:, 0, 0, 0] + [0, -8, 12], [28, 36, 28])  # a template face region stays clear of the brain
    data = np.where(head, 60, 0) + np.where(brain, 60, 0)
    affine = np.diag([1.5, 1.2, 1.0, 1.0])
    affine[:3, 3] = -np.array(shape) / 2
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.header["descrip"] = b"Patient John Doe 1970-01-01"
    img.header["aux_file"] = b"scanner-42"
    return img, brain, face


def test_changed_voxels_integer_and_float_paths_agree():
    """The integer shortcut of integrity.changed marks exactly the voxels the float test marks."""
    rng = np.random.default_rng(3)
    for dtype in (np.int16, np.uint8, np.uint16):
        full = rng.integers(0, 200, (20, 20, 20)).astype(dtype)
        defaced = full.copy()
        defaced[:5] = 0
        defaced[10, 10, 10] += 1
        fast = voxel_changed(full, defaced)
        slow = voxel_changed(full.astype(np.float32), defaced.astype(np.float32))
        assert fast.dtype == bool and np.array_equal(fast, slow)
        assert fast[10, 10, 10] and fast.sum() == (full[:5] != 0).sum() + 1


@pytest.mark.parametrize("codes", ["PSR", "PIL", "LAS", "LPS"])
def test_quickshear_same_cut_in_every_orientation(codes):
    img, brain, face = _synthetic_head()
    ras_keep = keep_mask(img, brain)
    other = _reorient(img, codes)
    brain_other = np.asarray(_reorient(io.mask_like(brain, img), codes).dataobj) > 0
    keep_other = keep_mask(other, brain_other)
    back = np.asarray(_reorient(io.mask_like(keep_other, other), "RAS").dataobj) > 0
    np.testing.assert_array_equal(back, ras_keep)
    assert ras_keep[brain].all()  # the brain is kept
    assert (~ras_keep[face]).mean() > 0.5  # the face block is cut
    assert ras_keep[:, :10].all()  # the back of the head is untouched


def test_quickshear_cut_spans_a_long_anterior_axis():
    """quickshear 1.2.0 alone evaluates its line over the S-I length; a long A-P axis must still be cut."""
    img, brain, face = _synthetic_head(shape=(64, 140, 60))
    keep = keep_mask(img, brain)
    assert (~keep[face]).mean() > 0.5
    assert keep[brain].all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("method", ["quickshear", "pydeface", "mri_deface", "facemasking"])
def test_output_keeps_grid_and_type_and_clears_header(method, dtype):
    img, brain, face = _synthetic_head(dtype=dtype)
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"identifying comment"))
    out, info = deface_image(method, img, brain_mask=brain, face_region=face)
    assert out.shape == img.shape and out.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_allclose(out.affine, img.affine, atol=1e-6)  # float32 header storage
    assert out.header["descrip"].item() == b"" and out.header["aux_file"].item() == b""
    assert len(out.header.extensions) == 0
    data, full = np.asanyarray(out.dataobj), np.asanyarray(img.dataobj)
    assert np.array_equal(data[brain], full[brain])  # the brain is untouched
    changed = voxel_changed(full, data)
    assert changed[face].mean() > (0.3 if method == "facemasking" else 0.8)
    assert info["voxels_changed"] == int(changed.sum())
    if method == "mri_deface":
        assert info["backend"].startswith("defacebench-mri_deface-like (re-implementation")
    if method == "facemasking":
        assert "re-implementation of Milchenko & Marcus 2013" in info["backend"]
        assert (data[face & changed] != 0).mean() > 0.9  # obscured, not removed


def test_mri_deface_freesurfer_requested_but_missing_is_a_failure():
    img, brain, face = _synthetic_head()
    with pytest.raises(AnalysisFailure):
        deface_image("mri_deface", img, brain_mask=brain, face_region=face, options={"backend": "freesurfer"})


def test_missing_masks_are_study_failures():
    img, _, _ = _synthetic_head()
    for method in METHODS:
        with pytest.raises(AnalysisFailure):
            deface_image(method, img)


def test_command_template_method(tmp_path):
    img, brain, face = _synthetic_head()
    out, info = deface_image("copy", img, command="cp {input} {output}")
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(img.dataobj))
    assert info["backend"] == "command: cp {input} {output}"
    with pytest.raises(AnalysisFailure, match="not on PATH"):
        deface_image("fsl_deface", img, command="fsl_deface_not_installed {input} {output}")


def _write_subject(tmp_path):
    img, brain, face = _synthetic_head()
    anat = tmp_path / "bids/sub-01/anat"
    anat.mkdir(parents=True)
    t1 = io.save_image(img, anat / "sub-01_T1w.nii.gz")
    (anat / "sub-01_T1w.json").write_text(json.dumps({"PatientName": "Doe", "RepetitionTime": 2.3}))
    # a FLAIR on a coarser grid covering the same world space
    flair_affine = img.affine.copy()
    flair_affine[:3, :3] *= 2
    flair_data = np.asanyarray(img.dataobj)[::2, ::2, ::2].astype(np.float32)
    flair = io.save_image(nib.Nifti1Image(flair_data, flair_affine), anat / "sub-01_FLAIR.nii.gz")
    return {"T1w": t1, "FLAIR": flair}, {"brain_mask": brain, "face_region": face.astype(np.float32)}


def test_deface_subject_writes_bids_names_and_scrubbed_sidecars(tmp_path):
    images, prep = _write_subject(tmp_path)
    before = {k: p.read_bytes() for k, p in images.items()}
    record = deface_subject("mri_deface", images, tmp_path / "out", prep=prep, render_dir=tmp_path / "renders")
    assert record["status"] == "ok", record
    assert (tmp_path / "out/sub-01_T1w.nii.gz").exists() and (tmp_path / "out/sub-01_FLAIR.nii.gz").exists()
    assert json.loads((tmp_path / "out/sub-01_T1w.json").read_text()) == {"RepetitionTime": 2.3}
    assert {k: p.read_bytes() for k, p in images.items()} == before  # inputs untouched
    t1 = record["images"]["T1w"]
    assert t1["brain_voxels_changed_fraction"] == 0.0 and t1["face_region_changed_fraction"] > 0.8
    assert Path(t1["render_defaced"]).exists() and "face_detected_full" in t1
    assert record["backend"].startswith("defacebench-mri_deface-like")


def test_full_renders_from_the_preparation_are_reused(tmp_path):
    """The preparation renders each full image once; a method's record points at that render, not a new one."""
    from defacebench.deface import render_full_images

    images, prep = _write_subject(tmp_path)
    prep["full_renders"] = render_full_images(images, tmp_path / "renders")
    assert set(prep["full_renders"]) == {"T1w", "FLAIR"}
    full_png = Path(prep["full_renders"]["T1w"]["render"])
    stamp = full_png.stat().st_mtime_ns
    record = deface_subject("quickshear", images, tmp_path / "out", prep=prep, render_dir=tmp_path / "renders")
    t1 = record["images"]["T1w"]
    assert t1["render_full"] == str(full_png) and full_png.stat().st_mtime_ns == stamp
    assert t1["face_detected_full"] == prep["full_renders"]["T1w"]["face_detected"]
    assert Path(t1["render_defaced"]).exists()


def test_apply_t1w_mask_resamples_the_removed_voxels(tmp_path):
    images, prep = _write_subject(tmp_path)
    record = deface_subject("quickshear", images, tmp_path / "out", prep=prep, options={"apply_t1w_mask": True})
    assert record["status"] == "ok", record
    t1_full, t1_def = (
        np.asanyarray(io.load_image(p).dataobj) for p in (images["T1w"], tmp_path / "out/sub-01_T1w.nii.gz")
    )
    fl_full, fl_def = (
        np.asanyarray(io.load_image(p).dataobj) for p in (images["FLAIR"], tmp_path / "out/sub-01_FLAIR.nii.gz")
    )
    removed_t1 = (t1_full != t1_def)[::2, ::2, ::2]
    removed_fl = fl_full != fl_def
    assert removed_fl.any() and (removed_fl == (removed_t1 & (fl_full != 0))).mean() > 0.99
    assert "T1w mask applied" in record["images"]["FLAIR"]["backend"]


def test_failure_is_recorded_and_nothing_written(tmp_path):
    images, prep = _write_subject(tmp_path)
    record = deface_subject(
        "fsl_deface",
        images,
        tmp_path / "out",
        prep=prep,
        options={"command": "fsl_deface_not_installed {input} {output}"},
    )
    assert record["status"] == "failed" and record["failed_stage"] == "deface"
    assert "not on PATH" in record["message"]
    assert not list((tmp_path / "out").glob("*.nii.gz"))


def _skull_stripped_phantom(tmp_path):
    """A brain-only (skull-stripped) T1w, and a template face region misplaced onto the brain's front.

    The face region is what a template registration that diverged on a head
    without scalp gives (PyDeface issues #6, #9, #41): PyDeface then removes brain.
    """
    img, brain, face = _synthetic_head()
    data = np.where(brain, np.asanyarray(img.dataobj), 0).astype(np.int16)
    g = np.indices(brain.shape)
    misplaced = (g[1] > 56) & (g[2] < 44)  # the brain's anterior-inferior part, a few % of its voxels
    anat = tmp_path / "bids/sub-01/anat"
    anat.mkdir(parents=True)
    t1 = io.save_image(nib.Nifti1Image(data, img.affine), anat / "sub-01_T1w.nii.gz")
    return {"T1w": t1}, {"brain_mask": brain, "face_region": misplaced.astype(np.float32)}


def test_brain_removed_from_a_skull_stripped_phantom_is_flagged(tmp_path):
    from defacebench.runner import deface_failure

    images, prep = _skull_stripped_phantom(tmp_path)
    record = deface_subject("pydeface", images, tmp_path / "out", prep=prep)
    entry = record["images"]["T1w"]
    assert record["status"] == "ok" and record["brain_removed"] is True, record
    assert entry["brain_removed"] is True and entry["brain_removed_pct"] > 1 and entry["brain_voxels_zeroed"] > 0
    assert record["brain_removed_images"] == {"T1w": entry["brain_removed_pct"]}
    assert "removed brain" in record["warning"] and (tmp_path / "out/sub-01_T1w.nii.gz").exists()
    # a threshold above the removed share: no flag
    loose = deface_subject("pydeface", images, tmp_path / "loose", prep=prep, options={"brain_removed_fraction": 0.5})
    assert loose["brain_removed"] is False and "warning" not in loose
    # treated as a failure: nothing written, the analyses of the variant fail with the reason
    strict = deface_subject(
        "pydeface", images, tmp_path / "strict", prep=prep, options={"brain_removed_is_failure": True}
    )
    assert strict["status"] == "failed" and strict["failed_stage"] == "deface" and strict["brain_removed"] is True
    assert "removed brain" in strict["message"] and not list((tmp_path / "strict").glob("*.nii.gz"))
    assert "removed brain" in deface_failure(strict, ["T1w"])


def test_brain_kept_is_not_flagged(tmp_path):
    images, prep = _write_subject(tmp_path)
    record = deface_subject("quickshear", images, tmp_path / "out", prep=prep)
    assert record["brain_removed"] is False and record["brain_removed_images"] == {} and "warning" not in record
    assert all(e["brain_removed"] is False for e in record["images"].values())


def _head_with_face(face=True, scalp=True, shape=(90, 110, 100), zoom=2.0):
    """A RAS head at 2 mm: ellipsoid brain, optionally a 10 mm scalp and a face (orbits to chin) in front and below."""
    g = (np.indices(shape).astype(np.float32) - np.array(shape, np.float32)[:, None, None, None] / 2) * zoom
    x, y, z = g
    brain = (x / 65) ** 2 + (y / 80) ** 2 + ((z - 20) / 55) ** 2 < 1
    data = np.where(brain, 100.0, 0.0)
    if scalp:
        data[((x / 75) ** 2 + (y / 90) ** 2 + ((z - 20) / 65) ** 2 < 1) & ~brain] = 60
    if face:  # a block from the orbits to the chin, 4-6 cm in front of the brain's centre line
        data[(np.abs(x) < 45) & (y > 30) & (y < 105) & (z > -70) & (z < 5)] = 70
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = -np.array(shape) / 2 * zoom
    return nib.Nifti1Image(data.astype(np.int16), affine), brain


def test_face_presence_tells_a_head_from_a_skull_stripped_or_defaced_scan():
    from defacebench.deface.face import face_presence

    head, brain = _head_with_face()
    found = face_presence(head, brain)
    assert found["has_face"] is True and found["face_tissue_fraction"] > 0.2, found
    for kind, img in (
        ("skull-stripped", _head_with_face(face=False, scalp=False)[0]),
        ("defaced", _head_with_face(face=False)[0]),
    ):
        none = face_presence(img, brain)
        assert none["has_face"] is False and none["face_tissue_ml"] < 1, (kind, none)
        assert none["reason"].startswith("no face to remove")
    # the verdict does not depend on the grid's orientation (world coordinates)
    assert face_presence(
        _reorient(head, "PIL"), _reorient(nib.Nifti1Image(brain.astype(np.uint8), head.affine), "PIL").get_fdata() > 0
    )["has_face"]
    assert face_presence(head, np.zeros_like(brain))["has_face"] is None


def test_no_face_is_recorded_and_the_variant_is_the_full_image(tmp_path):
    from defacebench.deface.face import face_presence
    from defacebench.runner import deface_failure

    img, brain = _head_with_face(face=False, scalp=False)
    anat = tmp_path / "bids/sub-01/anat"
    anat.mkdir(parents=True)
    t1 = io.save_image(img, anat / "sub-01_T1w.nii.gz")
    (anat / "sub-01_T1w.json").write_text(json.dumps({"PatientName": "Doe", "RepetitionTime": 2.3}))
    prep = {
        "brain_mask": brain,
        "face_check": face_presence(img, brain),
        "face_region_failure": ("registration", "template-to-subject registration diverged (linear scale 1.51)"),
    }
    for method in ("pydeface", "quickshear"):
        record = deface_subject(method, {"T1w": t1}, tmp_path / method, prep=prep)
        entry = record["images"]["T1w"]
        assert record["status"] == "no_face" and entry["status"] == "no_face", record
        assert "no face to remove" in record["message"] and "registration" not in record["message"]
        assert record["face_check"]["has_face"] is False and record["brain_removed"] is False
        out = io.load_image(tmp_path / method / "sub-01_T1w.nii.gz")
        assert np.array_equal(np.asanyarray(out.dataobj), np.asanyarray(img.dataobj))
        assert json.loads((tmp_path / method / "sub-01_T1w.json").read_text()) == {"RepetitionTime": 2.3}
        assert deface_failure(record, ["T1w"]) is None  # the analyses run on it
    # the check switched off: the method runs (and here fails on the registration, as before)
    forced = deface_subject("pydeface", {"T1w": t1}, tmp_path / "forced", prep=prep, options={"detect_no_face": False})
    assert forced["status"] == "failed" and forced["failed_stage"] == "registration"


# --- real heads ------------------------------------------------------------------------------------

REAL_T1W = {"IXI012": "PSR uint8", "IXI013": "PSR uint8", "xa30": "PIL uint16", "otsu": "RAS uint8 1 mm"}


@pytest.fixture(scope="module")
def real_records(real_bids, tmp_path_factory):
    """Every built-in method on every real head with a face (one preparation per subject)."""
    root = tmp_path_factory.mktemp("real")
    records = {}
    for subject in REAL_T1W:
        images = {"T1w": real_bids / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"}
        for method in METHODS:
            records[subject, method] = deface_subject(
                method,
                images,
                root / method / subject,
                render_dir=root / "renders" / subject,
                options={"preparation_dir": root / "prep" / subject},
            )
    return records


@pytest.mark.realdata
@pytest.mark.parametrize("subject", list(REAL_T1W))
def test_real_heads_brain_kept_face_removed(real_records, subject):
    for method in ("quickshear", "pydeface", "mri_deface", "facemasking"):
        record = real_records[subject, method]
        assert record["status"] == "ok", (method, record)
        entry = record["images"]["T1w"]
        assert entry["brain_voxels_changed_fraction"] <= 0.001, (method, entry)
        if method in ("pydeface", "mri_deface"):
            assert entry["face_region_changed_fraction"] >= 0.8, (method, entry)
        else:  # QuickShear cuts a plane, FaceMasking a surface layer: less of the deep face region
            assert entry["face_region_changed_fraction"] >= 0.5, (method, entry)
        assert entry["face_detected_full"], (method, entry)
        assert record["face_check"]["has_face"] is True and record["face_check"]["face_tissue_fraction"] > 0.15
    assert real_records[subject, "quickshear"]["images"]["T1w"]["face_detected_defaced"] in (False, subject == "xa30")


@pytest.mark.realdata
def test_real_skull_stripped_multimodal_lps_int16(real_bids, tmp_path):
    """gbm7294: LPS int16, four co-registered modalities, skull-stripped: no face, recorded as such for every
    method (never a registration failure); with the check off, QuickShear runs and keeps the brain."""
    anat = real_bids / "sub-gbm7294/anat"
    images = {"T1w": anat / "sub-gbm7294_T1w.nii.gz", "FLAIR": anat / "sub-gbm7294_FLAIR.nii.gz"}
    options = {"preparation_dir": tmp_path / "prep"}
    for method in METHODS:
        record = deface_subject(method, images, tmp_path / method, options=options)
        assert record["status"] == "no_face" and record["face_check"]["has_face"] is False, (method, record)
        assert record["face_check"]["face_tissue_fraction"] < 0.01
        out = io.load_image(tmp_path / method / "sub-gbm7294_FLAIR.nii.gz")
        assert np.array_equal(np.asanyarray(out.dataobj), np.asanyarray(io.load_image(images["FLAIR"]).dataobj))
    record = deface_subject("quickshear", images, tmp_path / "qs", options={**options, "detect_no_face": False})
    assert record["status"] == "ok", record
    out = io.load_image(tmp_path / "qs/sub-gbm7294_FLAIR.nii.gz")
    assert out.get_data_dtype() == np.int16 and nib.aff2axcodes(out.affine) == ("L", "P", "S")
    assert record["images"]["FLAIR"]["brain_voxels_changed_fraction"] <= 0.001
    assert record["images"]["FLAIR"]["brain_removed"] is False


@pytest.mark.realdata
def test_real_skull_stripped_mni_scan_has_no_face(real_bids):
    """ms07, skull-stripped in MNI space: no face to remove (IXI012, IXI013, xa30 and otsu, with faces, are
    checked in test_real_heads_brain_kept_face_removed; ms12, defaced by its provider, in bench/bench_face_check.py).
    """
    from defacebench.brain import extract_brain
    from defacebench.deface.face import face_presence

    img = io.load_image(real_bids / "sub-ms07/anat/sub-ms07_T1w.nii.gz")
    check = face_presence(img, extract_brain(img))
    assert check["has_face"] is False and check["face_tissue_ml"] < 1, check


def test_within_mm_repeats_its_answer_and_keeps_it_private():
    """A repeated dilation (every image of a subject on the T1w's grid) returns the same voxels, as a copy."""
    from defacebench.deface.common import _within_mm, within_mm

    mask = np.zeros((40, 44, 36), bool)
    mask[15:25, 18:26, 12:20] = True
    first = within_mm(mask, 4.0, (1.0, 1.0, 1.5))
    assert np.array_equal(first, _within_mm(mask, 4.0, (1.0, 1.0, 1.5)))
    assert first.sum() > mask.sum()
    first[:] = False  # a caller's edit must not reach the next caller
    assert np.array_equal(within_mm(mask, 4.0, (1.0, 1.0, 1.5)), _within_mm(mask, 4.0, (1.0, 1.0, 1.5)))
    # another distance, other zooms or other voxels are other questions
    assert within_mm(mask, 2.0, (1.0, 1.0, 1.5)).sum() < within_mm(mask, 4.0, (1.0, 1.0, 1.5)).sum()
    assert within_mm(mask, 4.0, (1.0, 1.0, 1.0)).sum() != within_mm(mask, 4.0, (1.0, 1.0, 1.5)).sum()
    shifted = np.roll(mask, 3, axis=0)
    assert np.array_equal(within_mm(shifted, 4.0, (1.0, 1.0, 1.5)), _within_mm(shifted, 4.0, (1.0, 1.0, 1.5)))
