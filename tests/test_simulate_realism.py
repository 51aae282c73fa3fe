"""The opt-in head realism (defacebench.simulate.realism): a real head's neck and fat, the brain untouched.

One head-space model per module (~45 s, as in test_simulate.py); subjects at 3 mm (~2 s each).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from scipy import ndimage

from defacebench.simulate import prepare_anatomy, simulate_subject
from defacebench.simulate import realism
from defacebench.simulate.anatomy import BACKGROUND, CSF, GM, HEAD, WM

REPO = Path(__file__).resolve().parents[1]
FAST = {"voxel_size": 3.0}
SEED = 2019020


@pytest.fixture(scope="module")
def anatomy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anatomy")
    prepare_anatomy(out, threads=2)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(root: Path, subject: str, name: str) -> np.ndarray:
    path = (
        root / f"sub-{subject}" / "anat" / f"sub-{subject}_{name}.nii.gz"
        if name == "T1w"
        else root / "derivatives" / "truth" / f"sub-{subject}" / "anat" / f"sub-{subject}_{name}.nii.gz"
    )
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)


def test_settings_default_off_true_all_defaults_unknown_refused():
    assert realism.settings_of(None) is None and realism.settings_of(False) is None
    assert realism.settings_of({"enabled": False, "neck_mm": 10}) is None
    assert realism.settings_of(True) == realism.DEFAULT_HEAD_REALISM
    assert realism.settings_of({"neck_mm": 0})["neck_mm"] == 0
    with pytest.raises(ValueError, match="unknown head_realism"):
        realism.settings_of({"neck": 10})
    # the config schema accepts the same forms and refuses a misspelt key
    import jsonschema

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]["simulation"]
    for good in (True, False, {"neck_mm": 40, "fat_to_wm": [1.3, 1.5]}):
        jsonschema.validate({"head_realism": good}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"head_realism": {"neck": 10}}, schema)


def test_off_is_byte_identical_to_no_setting(anatomy, tmp_path):
    for name, settings in (
        ("absent", FAST),
        ("false", {**FAST, "head_realism": False}),
        ("disabled", {**FAST, "head_realism": {"enabled": False}}),
    ):
        simulate_subject("healthy", "001", SEED, anatomy, tmp_path / name, settings)
    absent = _files(tmp_path / "absent")
    assert absent == _files(tmp_path / "false") == _files(tmp_path / "disabled")
    truth = json.loads((tmp_path / "absent/derivatives/truth/sub-001/anat/sub-001_truth.json").read_text())
    assert "head_realism" not in truth


def test_realism_adds_neck_and_bright_fat_and_leaves_the_brain(anatomy, tmp_path):
    plain_root, real_root = tmp_path / "plain", tmp_path / "real"
    necks = 0
    for subject in ("001", "002", "003"):
        plain = simulate_subject("healthy", subject, SEED, anatomy, plain_root, FAST)
        real = simulate_subject("healthy", subject, SEED, anatomy, real_root, {**FAST, "head_realism": True})
        # the brain's truth is exactly the same subject's
        for key in ("gm_ml", "wm_ml", "csf_ml", "icv_ml", "nbv_ml", "vscaling", "pitch_deg", "face_shape"):
            assert real[key] == plain[key], key
        assert set(real["head_realism"]) == set(realism.DEFAULT_HEAD_REALISM)
        dseg_plain, dseg_real = _load(plain_root, subject, "dseg"), _load(real_root, subject, "dseg")
        brain = np.isin(dseg_plain, (CSF, GM, WM))
        assert np.array_equal(dseg_plain[brain], dseg_real[brain])
        assert np.array_equal(np.isin(dseg_real, (CSF, GM, WM)), brain)
        # the brain's image is the same voxels (away from the head tissue, whose signal the scanner's
        # blur carries one voxel into it)
        t1_plain, t1_real = _load(plain_root, subject, "T1w"), _load(real_root, subject, "T1w")
        deep = brain & ~ndimage.binary_dilation(np.isin(dseg_real, (HEAD, BACKGROUND)), iterations=1)
        assert deep.sum() > 1000 and np.array_equal(t1_plain[deep], t1_real[deep])
        # fat: the non-brain tissue's brightest voxels are brighter than white matter, and brighter than before
        wm_plain, wm_real = (np.median(t[dseg_plain == WM]) for t in (t1_plain, t1_real))
        fat_plain = np.percentile(t1_plain[dseg_plain == HEAD], 99) / wm_plain
        fat_real = np.percentile(t1_real[dseg_real == HEAD], 99) / wm_real
        assert fat_real > 1.15 and fat_real > fat_plain + 0.1, (fat_plain, fat_real)
        # the neck: unless the field of view ends above the chin, more head tissue far below the
        # brain, and head tissue on the field of view's lowest slice (the mean head ends above it)
        if real["chin_cut"]:
            continue
        necks += 1
        depth = (np.flatnonzero(brain.any(axis=(0, 1))).min() - np.arange(dseg_plain.shape[2])) * FAST["voxel_size"]
        neck = depth > 50
        assert ((dseg_real == HEAD) & neck).sum() > 1.5 * ((dseg_plain == HEAD) & neck).sum()
        assert (dseg_real[:, :, 0] == HEAD).sum() > (dseg_plain[:, :, 0] == HEAD).sum() + 50
    assert necks >= 2  # subjects 001 and 003 of this seed keep their chin in view
