"""Overlap of label maps: Dice on one grid and across grids, and the cohort's overlap table."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from defacebench import overlap
from defacebench.records import Record


def test_dice_counts_shared_voxels():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:2] = True  # 32 voxels
    b[1:3] = True  # 32 voxels, 16 shared
    assert overlap.dice(a, b) == pytest.approx(0.5)
    assert overlap.dice(a, a) == 1.0 and overlap.dice(a, ~a) == 0.0
    assert overlap.dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_regions_follow_the_label_conventions():
    labels = np.array([0, 1, 2, 3, 4])
    assert overlap.region(labels, "NBV").tolist() == [False, False, True, True, False]  # GM, WM
    assert overlap.region(labels, "GBV").tolist() == [False, True, False, True, True]  # core
    assert overlap.region(labels, "WTV").tolist() == [False, True, True, True, True]  # whole tumour
    assert overlap.region(labels, "WMLV").tolist() == [False, True, True, True, True]


def test_region_dice_takes_the_reference_onto_a_thick_slice_grid():
    """A 3 mm label map against 1 mm truth: each thick voxel takes the label filling most of it."""
    truth = np.zeros((12, 12, 12), np.uint8)
    truth[3:9, 3:9, 3:9] = 1
    thin = nib.Nifti1Image(truth, np.eye(4))
    thick_affine = np.diag([1.0, 1.0, 3.0, 1.0])
    thick_affine[2, 3] = 1.0  # the centre of slices 0-2
    seg = np.zeros((12, 12, 4), np.uint8)
    seg[3:9, 3:9, 1:3] = 1  # thin slices 3-8
    assert overlap.region_dice(nib.Nifti1Image(seg, thick_affine), thin, "WMLV") == pytest.approx(1.0)
    seg[3:9, 3:9, 2] = 0
    assert overlap.region_dice(nib.Nifti1Image(seg, thick_affine), thin, "WMLV") == pytest.approx(2 / 3)
    # the same label map in another orientation on disk is the same segmentation
    flipped = nib.Nifti1Image(
        truth[::-1].copy(),
        np.diag([-1.0, 1, 1, 1]) @ np.array([[1, 0, 0, -11], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float),
    )
    assert overlap.region_dice(flipped, thin, "WMLV") == pytest.approx(1.0)


def test_truth_path_sits_beside_the_truth_json(tmp_path):
    truth_json = tmp_path / "sub-007_truth.json"
    assert overlap.truth_path(truth_json, "NBV") == tmp_path / "sub-007_dseg.nii.gz"
    assert overlap.truth_path(truth_json, "WTV") == tmp_path / "sub-007_desc-tumour_dseg.nii.gz"


def _study(tmp_path, maps: dict, failed=()):
    """Lesion records and label maps: ``maps[(subject, variant)]`` is the label array."""
    root = tmp_path / "segmentations"
    rows = []
    for (subject, variant), labels in maps.items():
        record = Record(cohort="c", subject=subject, variant=variant, outcome="WMLV", unit="ml", backend="b")
        if (subject, variant) in failed:
            record.status, record.failed_stage = "failed", "lesion_segmentation"
        else:
            record.value = float(labels.sum())
            name = overlap.segmentation_name("WMLV", subject, variant)
            folder = root / "WMLV" / f"sub-{subject}_variant-{variant}"
            folder.mkdir(parents=True)
            nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), folder / name)
            record.details = {"segmentation": name, "dice_vs_truth": 0.5 if variant == "none" else 0.25}
        rows.append(record.to_dict())
    path = tmp_path / "records.json"
    path.write_text(json.dumps(rows))
    from defacebench.tables import load_records

    return load_records([path]), root


def test_overlap_table_compares_each_defaced_map_with_the_full_one(tmp_path):
    full = np.zeros((6, 6, 6), bool)
    full[1:5, 1:5, 1:3] = True  # 32 voxels
    shrunk = full.copy()
    shrunk[1:5, 1:5, 2] = False  # 16 of them
    maps = {
        ("001", "none"): full,
        ("001", "quickshear"): full,
        ("001", "pydeface"): shrunk,
        ("002", "none"): full,
        ("002", "quickshear"): full,
        ("002", "pydeface"): full,
    }
    records, root = _study(tmp_path, maps, failed={("002", "pydeface")})
    table = overlap.overlap_table(records, root)
    # sub-002 failed once: not a complete case, so it leaves every method's rows
    assert sorted(table.subject) == ["001", "001"]
    by_method = table.set_index("method")
    assert by_method.loc["quickshear", "dice_vs_full"] == 1.0
    assert by_method.loc["pydeface", "dice_vs_full"] == pytest.approx(2 * 16 / 48)
    assert (table.dice_full_vs_truth == 0.5).all() and (table.dice_defaced_vs_truth == 0.25).all()
    summary = overlap.overlap_summary(table).set_index("method")
    assert summary.loc["pydeface", "n_complete"] == 1
    assert summary.loc["pydeface", "dice_vs_full_min"] == pytest.approx(2 / 3)


def test_written_overlap_tables(tmp_path):
    from defacebench.reports import write_overlap_tables

    full = np.zeros((6, 6, 6), bool)
    full[2:4, 2:4, 2:4] = True
    records, root = _study(tmp_path, {("001", "none"): full, ("001", "quickshear"): full})
    write_overlap_tables(records, root, tmp_path, "c")
    tsv = pd.read_csv(tmp_path / "c_overlap.tsv", sep="\t", dtype={"subject": str})
    assert tsv.columns.tolist() == list(overlap.SUBJECT_COLUMNS) and tsv.subject.tolist() == ["001"]
    text = (tmp_path / "c_overlap.md").read_text()
    assert "dice_vs_full_mean" in text and "Per subject" in text and "Dice 1945" in text


def test_overlap_figure_draws_the_subjects_that_moved_most(tmp_path):
    full = np.zeros((6, 6, 6), bool)
    full[1:5, 1:5, 1:4] = True
    moved = np.roll(full, 1, axis=0)
    maps = {("001", "none"): full, ("001", "quickshear"): full, ("002", "none"): full, ("002", "quickshear"): moved}
    records, root = _study(tmp_path, maps)
    flair = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), np.eye(4)), flair)
    table = overlap.overlap_table(records, root)
    png = overlap.plot_overlap(table, records, root, {"002": {"FLAIR": str(flair)}}, tmp_path / "c_overlap.png", "c")
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[2] in (3, 4)
    # magenta (defaced only) and cyan (full only) are both drawn: sub-002's map moved
    rgb = (pixels[..., :3] * 255).astype(int)
    assert ((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] > 150)).any()
    assert ((rgb[..., 0] < 60) & (rgb[..., 1] > 150) & (rgb[..., 2] > 200)).any()
    empty = overlap.plot_overlap(table.iloc[:0], records, root, {}, tmp_path / "none.png", "c")
    assert empty.exists()
