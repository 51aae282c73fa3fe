"""Simulated faces differ as faces do: the face shape deformation (defacebench.simulate.deform)."""

from __future__ import annotations

import numpy as np
import pytest

from defacebench.simulate import deform

LANDMARKS = {
    "nose_tip": [0.0, 120.0, -60.0],
    "midline_x": 0.0,
    "chin": [0.0, 105.0, -98.0],
    "brow": [0.0, 112.0, -30.0],
    "cheek_right": [40.0, 100.0, -55.0],
    "cheek_left": [-40.0, 100.0, -55.0],
}
EXTREME = {name: hi for name, (lo, hi) in deform.FACE_SHAPE_RANGES.items()}


def test_face_shape_is_drawn_within_its_ranges_and_by_seed():
    a = deform.draw_face_shape(np.random.default_rng(5))
    assert a == deform.draw_face_shape(np.random.default_rng(5))
    assert a != deform.draw_face_shape(np.random.default_rng(6))
    assert set(a) == set(deform.FACE_SHAPE_RANGES)
    for name, (lo, hi) in deform.FACE_SHAPE_RANGES.items():
        assert lo <= a[name] <= hi


def test_each_parameter_moves_its_feature_the_way_it_says():
    points = np.array(
        [LANDMARKS["nose_tip"], LANDMARKS["chin"], LANDMARKS["cheek_right"], LANDMARKS["cheek_left"], LANDMARKS["brow"]]
    ).T
    zero = {name: 0.0 for name in deform.FACE_SHAPE_RANGES}
    assert np.abs(deform.face_displacement(points, LANDMARKS, zero)).max() == 0
    u = deform.face_displacement(points, LANDMARKS, {**zero, "nose_protrusion_mm": 5.0})
    assert u[1, 0] == pytest.approx(5.0) and u[1, 1] < 1.0  # the nose tip forward, the chin hardly
    u = deform.face_displacement(points, LANDMARKS, {**zero, "chin_drop_mm": 4.0, "chin_protrusion_mm": 3.0})
    assert u[2, 1] == pytest.approx(-4.0) and u[1, 1] == pytest.approx(3.0)
    u = deform.face_displacement(points, LANDMARKS, {**zero, "cheek_fullness_mm": 5.0})
    assert u[0, 2] > 4.5 and u[0, 3] < -4.5  # both cheeks outward
    u = deform.face_displacement(points, LANDMARKS, {**zero, "brow_protrusion_mm": 4.0})
    assert u[1, 4] == pytest.approx(4.0)
    u = deform.face_displacement(points, LANDMARKS, {**zero, "face_width": 0.05})
    assert u[0, 2] > 0 > u[0, 3]  # wider about the midline
    # far from the face (the top of the head) nothing moves
    assert np.abs(deform.face_displacement(np.array([[0.0], [0.0], [80.0]]), LANDMARKS, EXTREME)).max() < 1e-3


@pytest.mark.parametrize("bound", [0, 1])
def test_the_deformation_cannot_fold_tissue(bound):
    # the mapping x -> x - u(x) keeps a positive Jacobian determinant over the face at the extreme shapes
    shape = {name: bounds[bound] for name, bounds in deform.FACE_SHAPE_RANGES.items()}
    axes = [np.arange(-70, 71, 2.0), np.arange(60, 141, 2.0), np.arange(-120, -9, 2.0)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"))
    mapped = grid - deform.face_displacement(grid.reshape(3, -1), LANDMARKS, shape).reshape(grid.shape)
    jacobian = np.stack([np.stack(np.gradient(mapped[i], 2.0), 0) for i in range(3)])  # (3, 3, ...)
    det = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    assert det.min() > 0.3
