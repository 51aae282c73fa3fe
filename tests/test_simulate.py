"""Simulated cohorts: determinism, ground truth consistency, BIDS files, realism checks, deepbet agreement.

One head-space model is prepared per test session (~45 s); subjects are
simulated at 2 mm to keep the module around two minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from defacebench.simulate import COHORT_KINDS, prepare_anatomy, simulate_subject, write_dataset_files
from defacebench.simulate import contrast, deform, pathology
from defacebench.simulate.anatomy import CSF, GM, HEAD, WM
from defacebench.simulate.dataset import save_nifti
from defacebench.simulate.subject import reorient
from defacebench.templates import mni152_intracranial_ml

FAST = {"voxel_size": 2.0}
SEED = 11


@pytest.fixture(scope="module")
def anatomy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anatomy")
    info = prepare_anatomy(out, threads=2)
    assert 1.2 < info["head_to_mni_det"] < 1.7  # the head template's brain is smaller than MNI152 2009's
    return out


@pytest.fixture(scope="module")
def cohorts(anatomy, tmp_path_factory) -> dict:
    """Two subjects of each kind at 2 mm, with dataset files."""
    out = {}
    for kind in COHORT_KINDS:
        root = tmp_path_factory.mktemp(kind)
        truths = [simulate_subject(kind, s, SEED, anatomy, root, FAST) for s in ("001", "002")]
        write_dataset_files(kind, root, truths, name=kind)
        out[kind] = (root, truths)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth_maps(root: Path, subject: str) -> dict[str, np.ndarray]:
    anat = root / "derivatives" / "truth" / f"sub-{subject}" / "anat"
    return {
        p.name.split("_", 1)[1].replace(".nii.gz", ""): np.asarray(nib.load(str(p)).dataobj)
        for p in anat.glob("*.nii.gz")
    }


def test_same_seed_gives_byte_identical_files(anatomy, cohorts, tmp_path):
    root, _ = cohorts["glioma"]
    again = tmp_path / "again"
    simulate_subject("glioma", "001", SEED, anatomy, again, FAST)
    first = {k: v for k, v in _files(root).items() if "sub-001" in k}
    second = _files(again)
    assert set(first) == set(second) and len(first) >= 8
    assert all(first[k] == second[k] for k in first), [k for k in first if first[k] != second[k]]
    # a different seed is a different person
    other = tmp_path / "other"
    simulate_subject("glioma", "001", SEED + 1, anatomy, other, FAST)
    assert _files(other)["sub-001/anat/sub-001_T1w.nii.gz"] != first["sub-001/anat/sub-001_T1w.nii.gz"]


def test_gzip_header_has_no_time_or_name(tmp_path):
    path = save_nifti(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "x.nii.gz")
    header = path.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"  # MTIME
    assert header[3] & 0x08 == 0  # no FNAME field


def test_truth_volumes_equal_label_sums(cohorts):
    for kind, (root, truths) in cohorts.items():
        for truth in truths:
            subject = truth["participant_id"][4:]
            maps = _truth_maps(root, subject)
            voxel_ml = truth["voxel_size_mm"] ** 3 / 1000
            dseg = maps["dseg"]
            assert truth["gm_ml"] == pytest.approx((dseg == GM).sum() * voxel_ml)
            assert truth["wm_ml"] == pytest.approx((dseg == WM).sum() * voxel_ml)
            assert truth["csf_ml"] == pytest.approx((dseg == CSF).sum() * voxel_ml)
            assert truth["icv_ml"] == pytest.approx(np.isin(dseg, [CSF, GM, WM]).sum() * voxel_ml)
            # the true scaling brings the true intracranial space to the MNI152 one the NBV arm fits to
            assert truth["icv_ml"] * truth["vscaling"] == pytest.approx(mni152_intracranial_ml())
            assert truth["nbv_ml"] == pytest.approx((truth["gm_ml"] + truth["wm_ml"]) * truth["vscaling"])
            saved = json.loads(
                (root / "derivatives/truth" / f"sub-{subject}/anat/sub-{subject}_truth.json").read_text()
            )
            assert saved["nbv_ml"] == pytest.approx(truth["nbv_ml"])
            if kind == "ms":
                lesion = maps["desc-lesion_mask"] > 0
                assert truth["lesion_ml"] == pytest.approx(lesion.sum() * voxel_ml)
                assert np.all(dseg[lesion] == WM)  # lesions are counted as white matter
                assert 0.3 <= truth["lesion_ml"] <= 50
            if kind == "glioma":
                tumour = maps["desc-tumour_dseg"]
                for name, label in (("necrosis", 1), ("oedema", 2), ("nonenhancing", 3), ("enhancing", 4)):
                    assert truth[f"{name}_ml"] == pytest.approx((tumour == label).sum() * voxel_ml)
                assert truth["tumour_core_ml"] == pytest.approx(np.isin(tumour, (1, 3, 4)).sum() * voxel_ml)
                assert 5 <= truth["tumour_core_ml"] <= 160


def test_images_load_with_valid_affine_and_a_face(cohorts):
    for kind, (root, truths) in cohorts.items():
        for truth in truths:
            subject = truth["participant_id"][4:]
            images = sorted((root / f"sub-{subject}" / "anat").glob("*.nii.gz"))
            assert len(images) == {"healthy": 1, "ms": 2, "glioma": 4}[kind]
            for path in images:
                img = nib.load(str(path))
                assert img.get_data_dtype() == np.int16 and img.ndim == 3
                assert np.all(np.isfinite(img.affine)) and abs(np.linalg.det(img.affine[:3, :3])) > 0.5
                assert np.allclose(img.get_sform(), img.affine) and img.header["sform_code"] == 1
                assert path.with_name(path.name.replace(".nii.gz", ".json")).exists()
            t1 = nib.load(str(root / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"))
            data = np.asarray(t1.dataobj, np.float32)
            face = _truth_maps(root, subject)["desc-face_mask"] > 0
            assert truth["face_ml"] > 150, truth["face_ml"]
            background = np.percentile(data[_truth_maps(root, subject)["dseg"] == 0], 50)
            assert np.median(data[face]) > 3 * max(background, 1.0)  # the face holds tissue signal


def test_tissue_and_pathology_contrast(cohorts):
    def means(root, subject, modality, region):
        data = np.asarray(nib.load(str(root / f"sub-{subject}/anat/sub-{subject}_{modality}.nii.gz")).dataobj, float)
        return float(data[region].mean())

    root, truths = cohorts["ms"]
    for truth in truths:
        s = truth["participant_id"][4:]
        maps = _truth_maps(root, s)
        dseg, lesion = maps["dseg"], maps["desc-lesion_mask"] > 0
        wm = (dseg == WM) & ~lesion
        assert means(root, s, "T1w", wm) > means(root, s, "T1w", dseg == GM) > means(root, s, "T1w", dseg == CSF)
        if truth["flair_slice_mm"] == truth["voxel_size_mm"] and lesion.sum() > 20:
            assert means(root, s, "FLAIR", lesion) > 1.2 * means(root, s, "FLAIR", wm)
            assert means(root, s, "FLAIR", dseg == CSF) < 0.5 * means(root, s, "FLAIR", wm)
        assert means(root, s, "T1w", lesion) < means(root, s, "T1w", wm)
    root, truths = cohorts["glioma"]
    for truth in truths:
        s = truth["participant_id"][4:]
        maps = _truth_maps(root, s)
        dseg, tumour = maps["dseg"], maps["desc-tumour_dseg"]
        wm = (dseg == WM) & (tumour == 0)
        assert means(root, s, "ce-gadolinium_T1w", tumour == 4) > 1.2 * means(root, s, "ce-gadolinium_T1w", wm)
        assert means(root, s, "T2w", dseg == CSF) > means(root, s, "T2w", wm)
        assert means(root, s, "T2w", tumour == 2) > 1.2 * means(root, s, "T2w", wm)


def test_skull_is_a_dark_band_as_in_real_t1w(cohorts):
    """Cortical bone right outside the intracranial region is dark (real T1w: 0.11-0.15 x WM), and the scalp
    further out is bright again, so brain extraction sees an inner table."""
    from scipy import ndimage

    root, truths = cohorts["healthy"]
    for truth in truths:
        s = truth["participant_id"][4:]
        data = np.asarray(
            nib.as_closest_canonical(nib.load(str(root / f"sub-{s}/anat/sub-{s}_T1w.nii.gz"))).dataobj, float
        )
        dseg_file = root / "derivatives" / "truth" / f"sub-{s}" / "anat" / f"sub-{s}_dseg.nii.gz"
        dseg = np.asarray(nib.as_closest_canonical(nib.load(str(dseg_file))).dataobj)
        icv = (dseg >= CSF) & (dseg <= WM)
        depth = ndimage.distance_transform_edt(~icv, sampling=truth["voxel_size_mm"])
        vault = np.zeros(icv.shape, bool)
        vault[..., int(np.argwhere(icv)[:, 2].mean()) :] = True  # above the brain's centre (RAS: axis 2 is superior)
        wm = np.median(data[dseg == WM])
        bone = np.median(data[vault & (dseg == HEAD) & (depth > 1.5) & (depth <= 4)]) / wm
        csf = np.median(data[dseg == CSF]) / wm
        scalp = np.percentile(data[vault & (dseg == HEAD) & (depth > 6) & (depth <= 10)], 75) / wm
        assert bone < 0.2 < csf and scalp > 0.5, (s, bone, csf, scalp)


def test_face_shape_changes_the_face_region_only(anatomy, cohorts, tmp_path, monkeypatch):
    # each subject's face shape is in its truth, within its ranges, and differs between subjects
    _, truths = cohorts["healthy"]
    shapes = [t["face_shape"] for t in truths]
    assert shapes[0] != shapes[1]
    for shape in shapes:
        assert set(shape) == set(deform.FACE_SHAPE_RANGES)
        assert all(lo <= shape[k] <= hi for k, (lo, hi) in deform.FACE_SHAPE_RANGES.items())
    # the same subject with the template's own face: the brain and the other draws are unchanged,
    # and the image differs only in the face region (PyDeface's face mask, within its soft edge)
    monkeypatch.setattr(deform, "draw_face_shape", lambda rng: {k: 0.0 for k in deform.FACE_SHAPE_RANGES})
    plain = simulate_subject("healthy", "001", SEED, anatomy, tmp_path, FAST)
    root, _ = cohorts["healthy"]
    for key in ("gm_ml", "wm_ml", "csf_ml", "pitch_deg", "noise_level", "atrophy"):
        assert plain[key] == truths[0][key], key
    shaped_maps, plain_maps = _truth_maps(root, "001"), _truth_maps(tmp_path, "001")
    brain = np.isin(shaped_maps["dseg"], (CSF, GM, WM))
    assert np.array_equal(brain, np.isin(plain_maps["dseg"], (CSF, GM, WM)))
    name = "sub-001/anat/sub-001_T1w.nii.gz"
    shaped, flat = (np.asarray(nib.load(str(r / name)).dataobj, float) for r in (root, tmp_path))
    changed = shaped != flat
    assert changed.sum() > 1000  # the face moved
    from scipy import ndimage

    face = (shaped_maps["desc-face_mask"] > 0) | (plain_maps["desc-face_mask"] > 0)
    near_face = ndimage.binary_dilation(face, iterations=6)
    # (the face region's soft edge and the air in front of the face, where a nose may grow, lie a little
    # beyond the tissue face mask: measured 2.3 % of the changed voxels further than 12 mm from it)
    assert changed[~near_face].sum() <= 0.05 * changed.sum()
    assert not (changed & ndimage.binary_dilation(brain, iterations=2)).any()


def test_dataset_files(cohorts):
    root, truths = cohorts["ms"]
    for path in (
        "dataset_description.json",
        "derivatives/truth/dataset_description.json",
        "README",
        "contact_sheet.png",
        "participants.json",
    ):
        assert (root / path).exists(), path
    assert json.loads((root / "derivatives/truth/dataset_description.json").read_text())["DatasetType"] == "derivative"
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(table["participant_id"]) == ["sub-001", "sub-002"]
    for column in ("nbv_ml", "gm_ml", "wm_ml", "csf_ml", "lesion_ml", "vscaling", "pitch_deg"):
        assert column in table.columns
    assert table["lesion_ml"].tolist() == pytest.approx([t["lesion_ml"] for t in truths], abs=1e-3)
    assert (root / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_difficulty_settings_take_effect(anatomy, tmp_path):
    hard = {
        "voxel_size": 2.0,
        "difficulty": {
            "chin_cut_probability": 1.0,
            "thick_slice_flair_probability": 1.0,
            "max_pitch_deg": 0.0,
            "reorient_probability": 1.0,
        },
    }
    truth = simulate_subject("ms", "007", 3, anatomy, tmp_path, hard)
    assert truth["chin_cut"] and truth["pitch_deg"] == 0.0 and truth["orientation"] != "RAS"
    flair = nib.load(str(tmp_path / "sub-007/anat/sub-007_FLAIR.nii.gz"))
    assert max(flair.header.get_zooms()) >= 4.0 and truth["flair_slice_mm"] >= 4.0
    assert "".join(nib.aff2axcodes(flair.affine)) == truth["orientation"]
    with pytest.raises(ValueError, match="unknown"):
        simulate_subject("ms", "008", 3, anatomy, tmp_path, {"voxel_size": 2.0, "difficulty": {"bogus": 1}})
    with pytest.raises(ValueError, match="unknown cohort kind"):
        simulate_subject("stroke", "008", 3, anatomy, tmp_path, FAST)


def test_deepbet_mask_matches_the_true_intracranial_region(cohorts):
    """deepbet's mask is the intracranial brain (GM + WM + CSF inside the skull): Dice >= 0.90."""
    from defacebench.brain import extract_brain

    root, truths = cohorts["healthy"]
    for truth in truths:
        s = truth["participant_id"][4:]
        mask = extract_brain(nib.load(str(root / f"sub-{s}/anat/sub-{s}_T1w.nii.gz")))
        dseg = _truth_maps(root, s)["dseg"]
        true = (dseg >= CSF) & (dseg <= WM)
        dice = 2 * (mask & true).sum() / (mask.sum() + true.sum())
        assert dice >= 0.90, (s, dice)


# -- unit tests of the pieces (no model needed)


def test_reorient_is_exact_and_consistent():
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    for codes in ("LPS", "PIL", "PSR"):
        out, new_affine = reorient(data, affine, codes)
        assert "".join(nib.aff2axcodes(new_affine)) == codes
        back = nib.as_closest_canonical(nib.Nifti1Image(out, new_affine))
        assert np.array_equal(np.asarray(back.dataobj), data) and np.allclose(back.affine, affine)


def test_thick_slices_keep_world_position():
    data = np.tile(np.arange(12, dtype=np.float32), (2, 2, 1))
    thick, affine = contrast.thick_slices(data, np.eye(4), 3)
    assert thick.shape == (2, 2, 4) and affine[2, 2] == 3
    assert np.allclose(thick[0, 0], [1, 4, 7, 10])
    assert np.allclose(affine @ [0, 0, 0, 1], [0, 0, 1, 1])  # centre of slices 0..2


def test_rician_noise_floor_and_mass_effect():
    rng = np.random.default_rng(0)
    zero = contrast.rician(np.zeros((50, 50, 50), np.float32), 1.0, rng)
    assert zero.mean() == pytest.approx(np.sqrt(np.pi / 2), rel=0.02)  # Rayleigh mean
    points = np.array([[0.0, 5.0, 30.0], [0, 0, 0], [0, 0, 0]])
    moved = deform.mass_effect(points, np.zeros(3), 10.0, 0.4)
    assert moved[0, 1] < 5.0 and abs(moved[0, 2] - 30.0) < 0.01 and np.all(np.diff(moved[0]) > 0)


def test_lesions_stay_in_white_matter():
    rng = np.random.default_rng(1)
    labels = np.full((60, 60, 60), WM, np.uint8)
    labels[:, :, :5] = GM
    labels[25:35, 25:35, 25:35] = CSF
    labels[0] = HEAD
    vent = np.full(labels.shape, 30.0, np.float32)
    vent[20:40, 20:40, 20:40] = 3.0
    lesion = pathology.white_matter_lesions(labels, vent, (1.0, 1.0, 1.0), rng, 5.0)
    assert 4.0 <= lesion.sum() / 1000 <= 9.0 and np.all(labels[lesion] == WM)


def test_sampling_inside_the_brain_box_equals_sampling_everywhere():
    from defacebench.simulate import deform

    rng = np.random.default_rng(5)
    volume = np.zeros((30, 32, 34), np.float32)
    volume[8:20, 10:25, 5:30] = rng.random((12, 15, 25))
    box = (slice(7, 21), slice(9, 26), slice(4, 31))  # the support with a voxel of margin
    coords = rng.uniform(-2, 36, (3, 20, 21, 22)).astype(np.float32)
    inside = deform.points_in_box(coords, box)
    assert 0 < inside.sum() < inside.size
    assert np.array_equal(deform.sample_in_box(volume, coords, box, inside, 0.0), deform.sample(volume, coords))


def test_head_model_registration_ignores_the_callers_itk_threads():
    """The head model's registration gives the same answer after a two-threaded ITK filter ran in the caller's process.

    ITK fixes its thread count at its first use in a process; run in the caller's process, the
    registration took that count (1.4151 instead of 1.4142 for the head-to-MNI scaling).
    """
    import subprocess
    import sys

    script = """
import os, sys, numpy as np, nibabel as nib
if sys.argv[1] == "warm":
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "2"
    from defacebench.analysis.pathology_common import n4_correct
    grid = np.indices((32, 32, 32), dtype=np.float32)
    n4_correct(grid[0] + 10.0, np.eye(4), np.ones((32, 32, 32), bool), threads=2)
from defacebench.brain import extract_brain
from defacebench.simulate.anatomy import register_mni_to_head
from defacebench.templates import pydeface_head
head = nib.load(str(pydeface_head()))
print(repr(register_mni_to_head(head, extract_brain(head))["head_to_mni_det"]))
"""
    runs = [
        subprocess.Popen([sys.executable, "-c", script, state], stdout=subprocess.PIPE, text=True)
        for state in ("cold", "warm")
    ]
    outputs = [run.communicate(timeout=600)[0].strip().splitlines()[-1] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] == outputs[1], outputs
