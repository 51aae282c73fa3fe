"""Accuracy against the user's reference labels (defacebench.reference): conventions, grids, missing files."""

import json

import nibabel as nib
import numpy as np
import pytest

from defacebench.reference import (
    LABEL_CONVENTIONS,
    compare,
    default_derivatives,
    find_reference,
    hd95,
    reference_entry,
    reference_region,
)


def _labels():
    """One voxel row per label 0-4, so each region is counted in voxels."""
    labels = np.zeros((5, 4, 4), np.uint8)
    for k in range(5):
        labels[k] = k
    return labels


@pytest.mark.parametrize(
    ("name", "core", "whole"),
    [("brats2017", {1, 4}, {1, 2, 4}), ("brats2023", {1, 3}, {1, 2, 3}), ("defacebench", {1, 3, 4}, {1, 2, 3, 4})],
)
def test_each_label_convention_gives_its_core_and_whole_tumour(name, core, whole):
    labels = _labels()
    assert set(np.unique(labels[reference_region(labels, "GBV", name)])) == core
    assert set(np.unique(labels[reference_region(labels, "WTV", name)])) == whole
    assert set(LABEL_CONVENTIONS[name]["core"]) == core
    # lesion and brain masks: every labelled voxel
    assert reference_region(labels, "WMLV", name).sum() == (labels > 0).sum()


def test_a_label_map_from_the_config_and_an_unknown_convention():
    labels = _labels()
    custom = {"core": [3], "whole": [2, 3]}
    assert set(np.unique(labels[reference_region(labels, "GBV", custom)])) == {3}
    with pytest.raises(ValueError, match="unknown tumour label convention"):
        reference_region(labels, "GBV", "brats1999")
    with pytest.raises(ValueError, match="needs whole"):
        reference_region(labels, "WTV", {"core": [1]})


def _cube(shape, affine, lo_mm, hi_mm, label=1):
    """A label map on (shape, affine) holding ``label`` where the voxel centre lies in the world box [lo, hi)."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(affine, ijk)
    inside = np.all((xyz >= lo_mm) & (xyz < hi_mm), axis=1).reshape(shape)
    return nib.Nifti1Image(np.where(inside, label, 0).astype(np.uint8), affine)


def test_reference_on_another_grid_is_compared_on_its_own_grid():
    """Analysis on a 1 mm RAS grid, reference on a 2 mm LPS grid: the region is resampled (nearest neighbour) onto it."""
    seg_affine = np.eye(4)
    seg_affine[:3, 3] = -19.5  # voxel borders on whole millimetres
    ref_affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    ref_affine[:3, 3] = [20, 20, -20]  # voxel borders on odd millimetres
    lo, hi = np.array([-9.0, -7.0, -5.0]), np.array([7.0, 9.0, 11.0])  # a 16 mm cube on both grids' borders
    seg = _cube((40, 40, 40), seg_affine, lo, hi, label=3)  # the arm's label 3: part of its tumour core
    ref = _cube((20, 20, 20), ref_affine, lo, hi, label=4)  # BraTS 2017's enhancing tumour: core
    same = compare(seg, ref, "GBV", "brats2017")
    assert same["dice_vs_reference"] == 1.0 and same["hd95_mm"] == 0.0
    assert same["volume_ml"] == pytest.approx(16**3 / 1000) and same["volume_difference_ml"] == pytest.approx(0.0)
    # the reference 4 mm to the left (x): 12 of 16 mm overlap
    shift = np.array([4.0, 0.0, 0.0])
    moved = compare(seg, _cube((20, 20, 20), ref_affine, lo + shift, hi + shift, label=4), "GBV", "brats2017")
    assert moved["dice_vs_reference"] == pytest.approx(12 / 16) and moved["hd95_mm"] == pytest.approx(4.0)
    # the arm's core against a reference holding oedema only (label 2): nothing to compare a surface with
    oedema = compare(seg, _cube((20, 20, 20), ref_affine, lo, hi, label=2), "GBV", "brats2017")
    assert oedema["dice_vs_reference"] == 0.0 and np.isnan(oedema["hd95_mm"])
    assert "reference's region is empty" in oedema["reference_note"]
    assert compare(seg, _cube((20, 20, 20), ref_affine, lo, hi, label=2), "WTV", "brats2017")["dice_vs_reference"] == 1


def test_hd95_of_concentric_balls():
    g = np.indices((40, 40, 40)) - 20
    r = np.sqrt((g**2).sum(0))
    assert 3.0 <= hd95(r < 10, r < 14, (1, 1, 1)) <= 5.0
    assert hd95(r < 10, r < 10, (1, 1, 1)) == 0.0
    assert hd95(r < 0, r < 0, (1, 1, 1)) == 0.0 and np.isnan(hd95(r < 10, r < 0, (1, 1, 1)))


def _derivatives(tmp_path):
    root = tmp_path / "bids" / "derivatives" / "manual"
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "manual", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    affine = np.eye(4)
    nib.save(_cube((20, 20, 20), affine, [5, 5, 5], [10, 10, 10]), anat / "sub-01_desc-lesion_mask.nii.gz")
    return root


def test_reference_found_with_pybids_and_a_missing_one_says_so(tmp_path):
    root = _derivatives(tmp_path)
    assert default_derivatives(tmp_path / "bids", "manual") == root
    assert default_derivatives(tmp_path / "bids", "other") is None
    path, why = find_reference(root, "01", "WMLV")
    assert path.name == "sub-01_desc-lesion_mask.nii.gz" and why == ""
    seg = _cube((20, 20, 20), np.eye(4), [5, 5, 5], [10, 10, 10])
    found = reference_entry(seg, "WMLV", "01", root)
    assert found["reference"] == str(path) and found["dice_vs_reference"] == 1.0 and "reference_missing" not in found
    missing = reference_entry(seg, "WMLV", "02", root)
    assert missing["reference"] is None and "no reference for sub-02 (desc-lesion_mask)" in missing["reference_missing"]
    assert "dice_vs_reference" not in missing
    tumour = reference_entry(seg, "GBV", "01", root)
    assert "desc-tumour_dseg" in tumour["reference_missing"] and tumour["reference_labels"].startswith("BraTS 2017")
    nowhere = reference_entry(seg, "WMLV", "01", tmp_path / "absent")
    assert "no reference dataset at" in nowhere["reference_missing"]
    assert reference_entry(seg, "WMLV", "01", None)["reference_missing"] == "no reference dataset configured or found"
    no_map = reference_entry(None, "WMLV", "01", root)
    assert no_map["reference"] == str(path) and "wrote no label map" in no_map["reference_missing"]
