"""Tests of the NBV arm (defacebench.analysis.nbv)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from defacebench.analysis.nbv import BACKENDS, normalised_brain_volume, parse_sienax_report
from defacebench.analysis.segmentation import segment_tissues
from defacebench.io import load_image
from defacebench.records import AnalysisFailure
from defacebench.templates import mni152, pydeface_head


def test_missing_t1w_fails_at_input():
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"FLAIR": nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))})
    assert info.value.stage == "input"


def test_constant_image_fails_with_a_stage():
    img = nib.Nifti1Image(np.full((40, 40, 40), 7, np.float32), np.eye(4))
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"T1w": img})
    assert info.value.stage == "input"


def test_noise_image_fails_as_a_study_failure():
    # 64 mm of noise cannot hold a brain: whatever deepbet returns, the arm must refuse it.
    # (A 128 mm noise cube is not reliably refused - a known gap, see the closing note of session 1.)
    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.random((64, 64, 64)).astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"T1w": img})
    assert info.value.stage in {"brain_extraction", "registration", "skull_estimation", "segmentation", "plausibility"}


def test_unknown_backend_is_a_configuration_error():
    img = nib.Nifti1Image(np.arange(27, dtype=np.float32).reshape(3, 3, 3), np.eye(4))
    with pytest.raises(ValueError):
        normalised_brain_volume({"T1w": img}, backend="nonsense")


def test_fsl_backend_without_fsl_is_a_recorded_failure(monkeypatch):
    monkeypatch.delenv("FSLDIR", raising=False)
    img = nib.Nifti1Image(np.arange(27, dtype=np.float32).reshape(3, 3, 3), np.eye(4))
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"T1w": img}, backend="fsl-sienax")
    assert info.value.stage == "fsl-sienax"


def test_parse_sienax_report():
    text = (
        "VSCALING 1.4130641490\n"
        "pgrey 638565.548134 (normalised) 451898.592834 (unnormalised)\n"
        "vcsf 39770.813354 (normalised) 28145.098831 (unnormalised)\n"
        "GREY 830437.658584 (normalised) 587682.009460 (unnormalised)\n"
        "WHITE 697427.298477 (normalised) 493551.766998 (unnormalised)\n"
        "BRAIN 1527864.957061 (normalised) 1081233.776459 (unnormalised)\n"
    )
    report = parse_sienax_report(text)
    assert report["vscaling"] == pytest.approx(1.4130641490)
    assert report["BRAIN"]["normalised_mm3"] == pytest.approx(1527864.957061)
    assert report["GREY"]["unnormalised_mm3"] == pytest.approx(587682.009460)


def test_segmentation_matches_mni_probability_maps():
    """GM/WM of nilearn's MNI152 T1 vs the sums of its own GM/WM probability maps."""
    t1 = nib.load(mni152("t1"))
    data = np.asarray(t1.dataobj, dtype=np.float32)
    mask = data > 0
    gm_map = np.asarray(nib.load(mni152("gm")).dataobj, dtype=np.float64)[mask].sum() / 255.0 / 1000
    wm_map = np.asarray(nib.load(mni152("wm")).dataobj, dtype=np.float64)[mask].sum() / 255.0 / 1000
    pve, params = segment_tissues(data, mask)
    assert np.allclose(pve.sum(axis=0)[mask], 1.0, atol=1e-5)
    # the maps are population priors, not this image's truth: measured GM +1.9 %, WM -5.6 %,
    # GM + WM -1.1 % (spreads re-estimated from pure labels: -0.2, -3.4 and -1.4 %)
    assert (pve[1].sum() + pve[2].sum()) / 1000 == pytest.approx(gm_map + wm_map, rel=0.02)
    assert pve[1].sum() / 1000 == pytest.approx(gm_map, rel=0.05)
    assert pve[2].sum() / 1000 == pytest.approx(wm_map, rel=0.07)
    assert params["class_means"][0] < params["class_means"][1] < params["class_means"][2]


def _check_result(result):
    assert result["backend"] == BACKENDS["sienax-like"]
    assert result["value"] == pytest.approx(result["brain_ml"] * result["vscaling"])
    assert result["brain_ml"] == pytest.approx(result["gm_ml"] + result["wm_ml"])
    # subject -> nilearn's MNI152 2009, which is larger than most adult heads
    assert 0.9 < result["vscaling"] < 2.0
    assert 800 < result["value"] < 2200
    assert "registration" in result["parameters"] and "segmentation" in result["parameters"]
    assert set(result["stage_times_s"]) >= {"brain_extraction", "registration", "segmentation"}
    # the hard tissue labels (FAST's _seg: 1 CSF, 2 GM, 3 WM) hold about the brain the fractions measured
    labels = np.asarray(result["segmentation"].dataobj)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    voxel_ml = float(np.prod(result["segmentation"].header.get_zooms()[:3])) / 1000
    assert np.isin(labels, (2, 3)).sum() * voxel_ml == pytest.approx(result["brain_ml"], rel=0.1)


def test_template_head_gives_plausible_nbv():
    result = normalised_brain_volume({"T1w": load_image(pydeface_head())}, threads=2)
    _check_result(result)
    assert result["extracranial_tissue"]


@pytest.mark.realdata
def test_implausible_range_is_a_plausibility_failure(real_bids):
    img = load_image(real_bids / "sub-IXI013" / "anat" / "sub-IXI013_T1w.nii.gz")
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"T1w": img}, threads=2, plausible_range_ml=(10, 20))
    assert info.value.stage == "plausibility"


@pytest.mark.realdata
def test_real_head_2mm(real_bids):
    img = load_image(real_bids / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz")
    _check_result(normalised_brain_volume({"T1w": img}, threads=2))


@pytest.mark.realdata
def test_skull_stripped_mni_input(real_bids):
    """sub-ms07 is skull-stripped and already in MNI space: it works, and VSCALING says so."""
    img = load_image(real_bids / "sub-ms07" / "anat" / "sub-ms07_T1w.nii.gz")
    result = normalised_brain_volume({"T1w": img}, threads=2)
    assert not result["extracranial_tissue"]
    _check_result(result)
    # brain-only scaling of a small (1030 ml GM+WM) brain: measured 1.56-1.60 over repeated runs
    assert 1.45 < result["vscaling"] < 1.75
    with pytest.raises(AnalysisFailure) as info:
        normalised_brain_volume({"T1w": img}, threads=2, skull_constraint="required")
    assert info.value.stage == "skull_estimation"


def _scaled_template_outline(scales, shift):
    """The MNI152 intracranial outline, shrunk by ``scales`` about (0, -18, 18) mm and shifted: a head of known VSCALING."""
    from defacebench.analysis.skull import brain_surface
    from defacebench.templates import mni152_intracranial

    mask, affine = mni152_intracranial()
    points = brain_surface(mask, affine, 2)
    centre = np.array([0.0, -18.0, 18.0])
    return (points - centre) / np.asarray(scales) + centre + np.asarray(shift)


def test_skull_fit_recovers_a_known_scaling():
    """A template outline scaled by known factors is brought back: VSCALING within 1 % of the true one."""
    from defacebench.analysis.skull import fit_skull_scaling

    scales = (0.93, 0.88, 0.95)
    correction, info = fit_skull_scaling(_scaled_template_outline(scales, (1.5, -2.0, 3.0)))
    true_vscaling = float(np.prod(scales))
    assert np.linalg.det(correction[:3, :3]) == pytest.approx(true_vscaling, rel=0.01)
    assert info["skull_rms_mm_after"] < info["skull_rms_mm_before"]


def test_skull_fit_is_stable_under_a_small_change_of_start():
    """Starting 0.3 % off changes the fitted VSCALING by < 0.3 % (the former chamfer fit moved 2-5 %)."""
    from defacebench.analysis.skull import fit_skull_scaling

    points = _scaled_template_outline((0.9, 0.9, 0.9), (0.0, 0.0, 0.0))
    nudge = np.diag([1.003, 0.997, 1.002, 1.0])
    nudge[:3, 3] = (0.4, -0.3, 0.5)
    plain, _ = fit_skull_scaling(points)
    nudged, _ = fit_skull_scaling(points @ nudge[:3, :3].T + nudge[:3, 3])
    a = np.linalg.det(plain[:3, :3])
    b = np.linalg.det(nudged[:3, :3] @ nudge[:3, :3])
    assert abs(b / a - 1) < 0.003


def test_shipped_template_distance_matches_a_fresh_computation():
    """The shipped MNI152 intracranial distance map is what compute_template_inner_skull_distance makes now."""
    from defacebench.analysis.skull import compute_template_inner_skull_distance, template_inner_skull_distance

    shipped, shipped_affine = template_inner_skull_distance()
    fresh, fresh_affine = compute_template_inner_skull_distance()
    assert shipped.shape == fresh.shape
    np.testing.assert_allclose(shipped_affine, fresh_affine)
    assert np.abs(shipped - fresh).max() <= 0.006  # 0.01 mm storage units
    # the MNI origin (near the anterior commissure) lies deep inside the outline, the grid's corner outside it
    origin = np.round(np.linalg.inv(shipped_affine) @ [0, 0, 0, 1])[:3].astype(int)
    assert shipped[tuple(origin)] < -10 and shipped[0, 0, 0] > 5


def test_face_neighbour_count_equals_the_six_neighbourhood_convolution():
    from scipy import ndimage

    from defacebench.analysis.segmentation import face_neighbour_count

    indicator = np.random.default_rng(3).random((23, 31, 17)) > 0.6
    kernel = ndimage.generate_binary_structure(3, 1).astype(np.float32)
    kernel[1, 1, 1] = 0
    expected = ndimage.convolve(indicator.astype(np.float32), kernel, mode="constant")
    np.testing.assert_array_equal(face_neighbour_count(indicator), expected)


def test_tabulated_label_likelihood_matches_the_direct_evaluation():
    from defacebench.analysis.segmentation import _label_loglik, _label_loglik_tabulated

    intensities = np.random.default_rng(5).uniform(0.0, 1.2, 200_000)
    means, sds = [0.3, 0.62, 0.95], [0.07, 0.06, 0.04]
    direct = _label_loglik(intensities, means, sds, 16)
    tabulated = _label_loglik_tabulated(intensities, means, sds, 16)
    np.testing.assert_allclose(tabulated, direct, rtol=0, atol=1e-5)
    assert np.array_equal(np.argmax(tabulated, axis=0), np.argmax(direct, axis=0))


def test_histogram_fit_is_stable_under_a_small_change_of_the_mask(real_bids):
    """sub-otsu (8-bit) after N4: removing any 73 of its 1.47 million brain voxels flipped the fit.

    The 73 voxels are what deepbet's mask lost after QuickShear; with the weights optimised jointly
    the CSF mean jumped from 0.19 to 0.28 of the 99th percentile for every random choice of them tried,
    moving NBV by 1.2 %. Profiled over the weights, the fit stays put.
    """
    from defacebench.analysis import bias, registration as reg
    from defacebench.analysis.segmentation import fit_histogram
    from defacebench.brain import deepbet_mask
    from defacebench.io import to_canonical

    head = to_canonical(load_image(real_bids / "sub-otsu" / "anat" / "sub-otsu_T1w.nii.gz"))
    mask = deepbet_mask(head)
    ants_head = reg.to_ants(head)
    corrected = bias.n4_correct(ants_head, ants_head.new_image_like(mask.astype(np.float32)), **bias.N4_SETTINGS)
    intensity = corrected.numpy().astype(np.float32)

    def csf_mean(brain):
        values = intensity[brain]
        return fit_histogram(values / np.percentile(values, 99.0))[1][0]

    reference = csf_mean(mask)
    inside = np.flatnonzero(mask)
    for seed in range(3):
        smaller = mask.copy().ravel()
        smaller[np.random.default_rng(seed).choice(inside, 73, replace=False)] = False
        assert csf_mean(smaller.reshape(mask.shape)) == pytest.approx(reference, abs=0.005)


def test_pure_class_spreads_are_not_narrowed_by_their_mixed_neighbours():
    """A full brain (thin CSF) whose tissues vary more than partial volume explains.

    Re-estimating a class's spread from the voxels labelled pure narrows it (they are a
    truncated sample) and hands the GM's dark tail to CSF: GM came out 4 % low that way."""
    n = 80
    z, y, x = np.mgrid[:n, :n, :n] - n / 2 + 0.5
    radius = np.sqrt(x**2 + y**2 + z**2)
    labels = np.select([radius < 18, radius < 28, radius < 30.5], [3, 2, 1], 0)
    true_sd = 0.06
    image = np.choose(labels, [0.0, 0.3, 0.62, 0.9]) + np.random.default_rng(0).normal(0, true_sd, labels.shape)
    pve, params = segment_tissues(image.astype(np.float32), labels > 0)
    assert pve[1].sum() / (labels == 2).sum() == pytest.approx(1.0, abs=0.025)
    assert (pve[1].sum() + pve[2].sum()) / np.isin(labels, (2, 3)).sum() == pytest.approx(1.0, abs=0.01)
    scale = np.percentile(image[labels > 0], 99)
    assert np.allclose(np.array(params["class_sds"]) / scale, true_sd / scale, rtol=0.15)


def test_n4_flattens_the_brain_and_keeps_the_rest():
    """NBV's N4: a 1.5-fold linear bias inside the mask comes out flat; voxels outside the mask are kept as they are."""
    from defacebench.analysis import bias
    from defacebench.antslib import image_from_array

    grid = np.indices((64, 64, 64), dtype=np.float32)
    radius = np.sqrt(((grid - 31.5) ** 2).sum(axis=0))
    mask = radius < 24
    tissue = np.where(radius < 15, 100.0, 60.0) + np.random.default_rng(2).normal(0, 2, radius.shape)
    data = (np.where(radius < 30, tissue, 0.0) * (0.75 + 0.5 * grid[0] / 63.0)).astype(np.float32)
    corrected = bias.n4_correct(
        image_from_array(data, np.eye(4)), image_from_array(mask.astype(np.float32), np.eye(4))
    ).numpy()
    inner = radius < 13
    assert np.std(data[inner]) / np.mean(data[inner]) > 0.045
    assert np.std(corrected[inner]) / np.mean(corrected[inner]) < 0.025
    np.testing.assert_array_equal(corrected[~mask], data[~mask])
