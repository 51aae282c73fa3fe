"""The brain extraction after Smith (2002) on synthetic heads whose brain is known exactly.

The head: a bright ellipsoidal brain inside a dark band (CSF, then skull) inside a bright scalp
shell, in air with Rician-like noise. It is small (brain semi-axes 42-50 mm) and coarse (3 mm),
and the runs other than the default one use 300 iterations (enough for a surface starting at half the head radius to reach
a brain this size), to keep the tests within a minute on two shared cores.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from defacebench.analysis.bet_like import (
    bet_like_brain_mask,
    bet_like_surface,
    head_parameters,
    icosphere,
    self_intersection_score,
    skull_surface_like,
    surface_mask,
)
from defacebench.records import AnalysisFailure

BRAIN_AXES_MM = np.array([42.0, 50.0, 40.0])
ITERATIONS = 300


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def synthetic_head(affine: np.ndarray, shape, seed: int = 0) -> tuple[nib.Nifti1Image, np.ndarray]:
    """(T1w-like image, brain mask) on the grid ``(affine, shape)``; the head is centred at world (0, 5, 10)."""
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3] - np.array([0.0, 5.0, 10.0])

    def inside(extra_mm: float) -> np.ndarray:
        return (((xyz / (BRAIN_AXES_MM + extra_mm)) ** 2).sum(axis=1) <= 1).reshape(shape)

    data = np.zeros(shape, np.float32)
    data[inside(16)] = 85.0  # scalp (fat)
    data[inside(9)] = 12.0  # skull
    data[inside(4)] = 30.0  # CSF
    brain = inside(0)
    data[brain] = 100.0
    rng = np.random.default_rng(seed)
    data = np.abs(data + rng.normal(0, 4, shape)).astype(np.float32)
    return nib.Nifti1Image(data, affine), brain


def grid(voxel_mm, fov_mm=(150.0, 165.0, 150.0)) -> tuple[np.ndarray, tuple]:
    voxel = np.asarray(voxel_mm, float)
    shape = tuple(round(f / v) for f, v in zip(fov_mm, voxel))
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) * voxel / 2 + np.array([0.0, 5.0, 10.0])
    return affine, shape


@pytest.fixture(scope="module")
def head():
    return synthetic_head(*grid((3.0, 3.0, 3.0)))


@pytest.fixture(scope="module")
def surface(head):
    """The brain surface at the default parameters (f = 0.5, g = 0), with the test's iteration count."""
    image, _ = head
    return bet_like_surface(image, iterations=ITERATIONS)


@pytest.fixture(scope="module")
def default_result(head, surface):
    """What bet_like_brain_mask returns for the default surface (its mask is this surface filled)."""
    image, _ = head
    vertices, faces, info = surface
    return surface_mask(vertices, faces, image.affine, image.shape), info


def test_icosphere_is_a_closed_outward_sphere():
    vertices, faces = icosphere()
    assert len(vertices) == 2562 and len(faces) == 5120
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0)
    # Euler characteristic of a sphere: V - E + F = 2
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    assert len(vertices) - len(edges) + len(faces) == 2


def test_head_parameters_follow_the_paper(head):
    image, _ = head
    data = np.asarray(image.dataobj)
    params = head_parameters(data, image.affine)
    t2, t98 = np.percentile(data, [2, 98])
    assert params["t2"] == pytest.approx(t2) and params["t98"] == pytest.approx(t98)
    assert params["t"] == pytest.approx(t2 + 0.1 * (t98 - t2))
    np.testing.assert_allclose(params["cog_mm"], [0, 5, 10], atol=1.5)
    head_volume = (data > params["t"]).sum() * 27.0
    assert 4 / 3 * np.pi * params["radius_mm"] ** 3 == pytest.approx(head_volume)
    assert params["t"] < params["tm"] <= params["t98"]


def test_mask_is_the_brain_and_not_the_scalp(head, default_result):
    image, brain = head
    mask, info = default_result
    assert dice(mask, brain) > 0.9
    scalp = (np.asarray(image.dataobj) > 60) & ~brain  # bright voxels outside the brain
    assert (mask & scalp).sum() < 0.01 * scalp.sum()
    assert info["iterations"] == ITERATIONS and info["passes"] == 1 and not info["self_intersection_rerun"]
    assert info["fractional_threshold"] == 0.5 and info["vertical_gradient"] == 0.0
    assert mask.sum() == pytest.approx(brain.sum(), rel=0.1)


def test_same_mask_in_world_space_for_anisotropic_and_reoriented_grids(head, default_result):
    image, _ = head
    reference, _ = default_result
    # anisotropic voxels, axes permuted and flipped, and a 20-degree rotation about z
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    permute_flip = np.array([[0, -1, 0], [0, 0, 1], [1, 0, 0]], float)  # voxel axes (i, j, k) -> world (-j, k, i)
    zooms = np.array([2.5, 3.0, 3.5])
    linear = rotation @ permute_flip @ np.diag(zooms)
    shape = (46, 58, 64)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.array([0.0, 5.0, 10.0]) - linear @ ((np.array(shape) - 1) / 2)
    other_image, other_brain = synthetic_head(affine, shape, seed=1)
    other, info = bet_like_brain_mask(other_image, iterations=ITERATIONS)
    assert dice(other, other_brain) > 0.9
    assert info["volume_ml"] == pytest.approx(other_brain.sum() * abs(np.linalg.det(linear)) / 1000, rel=0.1)
    ml = [reference.sum() * 27 / 1000, other.sum() * abs(np.linalg.det(linear)) / 1000]
    assert ml[0] == pytest.approx(ml[1], rel=0.05)
    # the two masks on one grid: resample the reoriented one onto the reference grid (nearest voxel)
    ijk = np.indices(image.shape).reshape(3, -1).T.astype(float)
    world = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    index = np.rint((world - affine[:3, 3]) @ np.linalg.inv(linear).T).astype(int)
    valid = ((index >= 0) & (index < np.array(shape))).all(axis=1)
    resampled = np.zeros(len(world), bool)
    resampled[valid] = other[tuple(index[valid].T)]
    assert dice(resampled.reshape(image.shape), reference) > 0.9


def test_smaller_fractional_threshold_gives_a_larger_brain():
    # a brain whose edge is a ramp (partial volume), where the threshold decides where the edge is
    image, _ = synthetic_head(*grid((3.0, 3.0, 3.0)), seed=2)
    blurred = nib.Nifti1Image(ndimage.gaussian_filter(np.asarray(image.dataobj), 1.2), image.affine)
    volumes = [
        bet_like_brain_mask(blurred, fractional_threshold=f, iterations=ITERATIONS)[1]["volume_ml"] for f in (0.3, 0.7)
    ]
    assert volumes[0] > volumes[1] * 1.03


def test_self_intersection_score_sees_a_fold():
    vertices, faces = icosphere(3)
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    sphere = 50 * vertices
    assert self_intersection_score(sphere * 1.3, sphere, edges) < 100
    # push the top cap down through the bottom: far-apart vertices meet
    folded = sphere.copy()
    folded[sphere[:, 2] > 20, 2] -= 90
    assert self_intersection_score(folded, sphere, edges) > 4000


def test_surface_mask_fills_a_sphere_and_closes_at_the_edge_of_the_field_of_view():
    vertices, faces = icosphere(3)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -40
    mask = surface_mask(30 * vertices, faces, affine, (41, 41, 41))
    assert mask.sum() * 8 == pytest.approx(4 / 3 * np.pi * 30**3, rel=0.05)
    # a sphere cut by the field of view: the part inside is still filled
    cut = surface_mask(30 * vertices + [0, 0, 25], faces, affine, (41, 41, 41))
    assert cut[20, 20, 38] and cut[20, 20, 20] and not cut[20, 20, 5]


def test_outer_skull_is_found_beyond_the_dark_band_and_missing_where_the_face_is_removed(head, surface):
    image, brain = head
    vertices, faces, info = surface
    skull, skull_info = skull_surface_like(image, vertices, faces, info)
    # the scalp begins 9 mm outside the brain; samples are 1 mm apart, the brain surface is a voxel-scale estimate
    assert 6.5 < skull_info["mean_brain_to_outer_skull_mm"] < 10.5
    assert skull_info["no_head_beyond_brain_fraction"] < 0.01
    assert (np.linalg.norm(skull - vertices, axis=1) <= 30).all()
    # "deface": replace everything outside the brain in front of y = 40 mm by air
    data = np.asarray(image.dataobj).copy()
    world = np.indices(data.shape).reshape(3, -1).T @ image.affine[:3, :3].T + image.affine[:3, 3]
    face = (world[:, 1] > 40).reshape(data.shape) & ~brain
    data[face] = np.abs(np.random.default_rng(3).normal(0, 4, face.sum()))
    _, defaced_info = skull_surface_like(nib.Nifti1Image(data, image.affine), vertices, faces, info)
    assert defaced_info["no_head_beyond_brain_fraction"] > 0.1


def test_constant_image_is_an_analysis_failure():
    affine, shape = grid((3.0, 3.0, 3.0))
    with pytest.raises(AnalysisFailure) as failure:
        bet_like_brain_mask(nib.Nifti1Image(np.full(shape, 7, np.float32), affine))
    assert failure.value.stage == "brain_extraction"


def test_robust_field_of_view_keeps_the_head_and_drops_the_neck():
    """A long neck below the head: the image is cut 170 mm below the top of the head (after FSL robustfov).

    The 'bet-like' backend no longer uses this cut but the standard-space ROI (after bet -B), which
    needs a head a template can be registered to: tests/test_head_registration.py."""
    from defacebench.analysis.bet_like import robust_field_of_view

    affine, shape = grid((3.0, 3.0, 3.0), fov_mm=(150.0, 165.0, 300.0))
    img, brain = synthetic_head(affine, shape)
    data = np.asarray(img.dataobj).copy()
    xyz = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    neck = ((xyz[:, 0] ** 2 + (xyz[:, 1] - 5) ** 2 < 45**2) & (xyz[:, 2] < -40)).reshape(shape)
    data[neck & (data < 50)] = 85.0  # neck muscle and fat, as bright as the scalp
    img = nib.Nifti1Image(data, affine)
    cropped, info = robust_field_of_view(img)
    top_mm = (affine @ [0, 0, info["robust_fov"]["top_slice"], 1])[2]
    assert top_mm == pytest.approx(10 + BRAIN_AXES_MM[2] + 16, abs=4)  # the scalp's top
    bottom_mm = (affine @ [0, 0, info["robust_fov"]["bottom_slice"], 1])[2]
    assert top_mm - bottom_mm == pytest.approx(170, abs=3.0)  # 170 mm kept, to the nearest slice
    assert cropped.shape[2] == shape[2] - info["robust_fov"]["bottom_slice"]
