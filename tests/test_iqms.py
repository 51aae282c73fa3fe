"""MRIQC's anatomical IQMs after Esteban et al. 2017 (defacebench.quality.iqms, .masks).

Analytic cases on synthetic images; with ``DEFACEBENCH_MRIQC_PYTHON`` set to a
Python that has mriqc 24.0.2, every IQM of a small phantom is compared with
MRIQC's own interfaces on the same arrays (bench/mriqc_iqms_reference.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from defacebench.quality import iqms, masks
from defacebench.quality.iqms import (
    IQM_NAMES,
    IQMInputs,
    MetricUndefined,
    image_quality_metrics,
)

REPO = Path(__file__).resolve().parents[1]
WM, GM, CSF, SCALP = 1000.0, 600.0, 250.0, 400.0
TISSUE_SD, AIR_SD = 20.0, 10.0


def _phantom(shape=(48, 48, 48), seed=0, air=True, ghost=False) -> IQMInputs:
    """Nested ellipsoids: WM core, GM and CSF shells, scalp; Gaussian noise in tissue, Rayleigh noise in air."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((g - c) / (n / 48)) ** 2 for g, c, n in zip(grid, centre, shape)))
    labels = np.select([r < 8, r < 12, r < 15], [3, 2, 1], 0).astype(np.uint8)
    head = r < 20
    image = np.select([labels == 3, labels == 2, labels == 1, head], [WM, GM, CSF, SCALP], 0.0)
    image[head] += rng.normal(0, TISSUE_SD, int(head.sum()))
    noise = AIR_SD * np.hypot(rng.normal(size=shape), rng.normal(size=shape))  # magnitude of complex noise
    image[~head] = noise[~head] if air else 0.0
    image[:3] = 0  # an empty frame, as a rotation leaves it
    hat = ~head & (grid[2] > shape[2] / 3)
    hat[:3] = False
    if ghost:
        image[4:8, 4:8, 40:44] += 400.0  # a bright ghost in the air, far from the head
    image = np.round(image)  # integers, as scanners store them
    pv = np.stack([(labels == k).astype(np.float32) for k in (1, 2, 3)])
    field_map = (1.0 + 0.002 * (grid[0] - centre[0])).astype(np.float32)
    distance = masks.artifact_distance(head, hat)
    artifact = masks.artifact_mask(image, hat, distance)
    return IQMInputs(
        image=image.astype(np.float32),
        corrected=image.astype(np.float32),
        zooms=(1.0, 1.0, 1.0),
        brain=labels > 0,
        head=head,
        rotation=masks.rotation_mask(image),
        hat=hat,
        artifact=artifact,
        air=hat & ~artifact,
        partial_volumes=pv,
        labels=labels,
        inu_field=field_map,
        template_priors=np.stack([ndimage.gaussian_filter(p, 1.5) for p in pv]),
    )


@pytest.fixture(scope="module")
def phantom() -> IQMInputs:
    return _phantom()


@pytest.fixture(scope="module")
def phantom_iqms(phantom) -> dict:
    return image_quality_metrics(phantom)


def test_every_iqm_is_returned_with_provenance(phantom_iqms):
    assert tuple(phantom_iqms["iqms"]) == IQM_NAMES
    assert phantom_iqms["implementation"] == "defacebench-iqms" and "MRIQC 24.0.2" in phantom_iqms["reference"]
    assert phantom_iqms["undefined"] == {}
    assert all(np.isfinite(v) for v in phantom_iqms["iqms"].values())
    # S2 Data of Provins et al. 2025 has these columns; every one of them is here
    s2 = {
        "cjv",
        "cnr",
        "efc",
        "fber",
        "fwhm_avg",
        "icvs_gm",
        "inu_med",
        "inu_range",
        "qi_1",
        "qi_2",
        "rpve_wm",
        "snr_total",
        "snrd_total",
        "summary_bg_k",
        "summary_wm_p95",
        "tpm_overlap_csf",
        "wm2max",
    }
    assert s2 <= set(IQM_NAMES)


def test_snr_cnr_cjv_of_piecewise_constant_tissue(phantom_iqms):
    values = phantom_iqms["iqms"]
    # harmonisation scales WM's median to 1000: intensities and their s.d. keep their ratios
    assert values["summary_wm_median"] == pytest.approx(1000, abs=2)
    assert values["snr_wm"] == pytest.approx(WM / TISSUE_SD, rel=0.05)
    assert values["snr_gm"] == pytest.approx(GM / TISSUE_SD, rel=0.05)
    assert values["cjv"] == pytest.approx(2 * TISSUE_SD / (WM - GM), rel=0.08)  # MADs of normal noise = s.d.
    sigma_air = AIR_SD * math.sqrt((4 - math.pi) / 2) * 1000 / WM  # Rayleigh s.d., harmonised
    assert values["summary_bg_stdv"] == pytest.approx(sigma_air, rel=0.1)
    assert values["cnr"] == pytest.approx((WM - GM) / math.sqrt(sigma_air**2 + 2 * TISSUE_SD**2), rel=0.05)
    # Dietrich: the air's MAD stands for its spread; SNRd = factor x median / MAD
    assert values["snrd_wm"] == pytest.approx(
        iqms.DIETRICH_FACTOR * values["summary_wm_median"] / values["summary_bg_mad"], rel=1e-9
    )
    assert values["icvs_wm"] == pytest.approx(
        (np.array(_phantom().labels) == 3).sum() / (np.array(_phantom().labels) > 0).sum(), rel=1e-6
    )


def test_snr_formula():
    assert iqms.snr(100.0, 10.0, 101) == pytest.approx(10.0 / math.sqrt(101 / 100))
    with pytest.raises(MetricUndefined):
        iqms.snr(100.0, 0.0, 50)


def test_efc_of_a_constant_image_is_one_and_of_a_single_voxel_zero():
    assert iqms.efc(np.full((10, 10, 10), 7.0)) == pytest.approx(1.0, abs=1e-4)
    spike = np.zeros((10, 10, 10))
    spike[4, 5, 6] = 100.0
    assert iqms.efc(spike) == pytest.approx(0.0, abs=1e-4)
    # the frame mask takes voxels out of N
    frame = np.zeros((10, 10, 10), bool)
    frame[:2] = True
    assert iqms.efc(np.where(frame, 0.0, 3.0), frame) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("sigma, zooms", [(1.5, (1.0, 1.0, 1.0)), (2.5, (1.0, 1.2, 2.0))])
def test_fwhm_of_smoothed_white_noise(sigma, zooms):
    noise = np.random.default_rng(1).normal(size=(72, 72, 72))
    smooth = ndimage.gaussian_filter(noise, sigma)
    mask = np.zeros(smooth.shape, bool)
    mask[12:-12, 12:-12, 12:-12] = True
    estimate = iqms.fwhm_classic(smooth, mask, zooms)
    expected = 2 * math.sqrt(2 * math.log(2)) * sigma
    for axis, zoom in enumerate(zooms):
        assert estimate[axis] == pytest.approx(expected * zoom, rel=0.04)


def test_fwhm_of_white_noise_is_small_and_constant_image_undefined():
    noise = np.random.default_rng(2).normal(size=(30, 30, 30))
    assert all(v < 1.2 for v in iqms.fwhm_classic(noise, np.ones(noise.shape, bool), (1, 1, 1)))
    with pytest.raises(MetricUndefined):
        iqms.fwhm_classic(np.ones((10, 10, 10)), np.ones((10, 10, 10), bool), (1, 1, 1))


def test_summary_stats_of_a_binary_region_equal_numpy():
    rng = np.random.default_rng(3)
    image = rng.gamma(4.0, 50.0, size=(30, 30, 30))
    region = rng.random(image.shape) < 0.3
    result = iqms.summary_stats(image, {"r": region}, decimals=None)["r"]
    values = np.round(image[region])
    assert result["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert result["stdv"] == pytest.approx(values.std(), rel=1e-12)
    assert result["n"] == region.sum()
    core = image[region]
    assert result["k"] == pytest.approx(stats.kurtosis(core), rel=1e-9)
    assert result["mad"] == pytest.approx(np.median(np.abs(core - result["median"])) / stats.norm.ppf(0.75), rel=1e-12)
    # SAS quantile of unit weights: the order statistic at ceil(pN), the mean of two on an exact hit
    ordered = np.sort(values)
    for p, key in ((0.05, "p05"), (0.5, "median"), (0.95, "p95")):
        target = p * ordered.size
        j = math.ceil(target) - 1
        expected = (ordered[j] + ordered[j + 1]) / 2 if target == int(target) else ordered[j]
        assert result[key] == expected


def test_weighted_quantiles_equal_statsmodels():
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    rng = np.random.default_rng(4)
    values = np.round(rng.normal(100, 20, 4000))
    weights = np.round(rng.random(4000).astype(np.float32), 3).astype(np.float64)
    weights[:300] = 0
    expected = weightstats.DescrStatsW(values, weights=weights).quantile(
        np.array([0.05, 0.5, 0.95]), return_pandas=False
    )
    assert np.array_equal(iqms.weighted_quantiles(values, weights, [0.05, 0.5, 0.95]), expected)


def test_kde_equals_the_direct_sum_and_chi2_fit_equals_scipy():
    rng = np.random.default_rng(5)
    samples = np.round(np.abs(rng.normal(0, 1, (6000, 2))).sum(axis=1) * 10)
    samples *= 100 / np.percentile(samples, 99)
    grid = np.linspace(0, 110, 1000)
    direct = np.exp(-0.5 * ((grid[:, None] - samples[None, :]) / 4.0) ** 2).sum(axis=1) / (
        samples.size * 4.0 * math.sqrt(2 * math.pi)
    )
    assert np.max(np.abs(iqms.gaussian_kde_on_grid(samples, grid, 4.0) - direct)) < 1e-12 * direct.max()
    assert np.allclose(iqms.chi2_fit(samples, 32), stats.chi2.fit(samples, 32), rtol=1e-9, atol=0)


def test_qi1_detects_a_ghost_in_the_air():
    clean = _phantom(seed=6)
    ghosted = _phantom(seed=6, ghost=True)
    assert iqms.qi1(clean.air, clean.artifact) < 1e-3
    assert ghosted.artifact.sum() >= 32  # most of the 64 ghost voxels survive the opening
    assert iqms.qi1(ghosted.air, ghosted.artifact) > 10 * max(iqms.qi1(clean.air, clean.artifact), 1e-5)
    # MRIQC 24.0.2's distance map (zero in the hat) hides every artefact: QI1 = 0
    distance = masks.artifact_distance(ghosted.head, ghosted.hat, "mriqc-24.0.2")
    assert not masks.artifact_mask(ghosted.image, ghosted.hat, distance).any()


def test_artifact_mask_on_quantised_air_uses_the_sd():
    # over half the positive air shares one value (IXI's scans): the MAD is 0; MRIQC divides by it
    # and calls every positive voxel an artefact, here the s.d. stands in
    rng = np.random.default_rng(8)
    image = np.where(rng.random((40, 40, 40)) < 0.6, 14.0, 14.0 * rng.integers(0, 4, (40, 40, 40)))
    image[30:34, 30:34, 30:34] = 2000.0
    hat = np.ones(image.shape, bool)
    found = masks.artifact_mask(image, hat, np.ones(image.shape))
    ghost = np.zeros(image.shape, bool)
    ghost[30:34, 30:34, 30:34] = True
    # the opening with the 6-neighbourhood trims the cube's edges and corners, nothing else is found
    assert found[31:33, 31:33, 31:33].all() and not (found & ~ghost).any()


def test_rotation_mask_of_a_real_scan_is_empty_space(real_bids):
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(real_bids / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz")))
    image = np.asarray(img.dataobj, np.float32)
    frame = masks.rotation_mask(image)
    assert frame.sum() > 0.1 * image.size and not (frame & (image > 0)).any()


def test_qi2_is_small_for_pure_rayleigh_air(phantom):
    value = iqms.qi2(phantom.image, phantom.hat)
    assert 0 <= value < 0.01


def test_rotation_mask_finds_the_empty_frame(phantom):
    assert phantom.rotation[:3].all() and not phantom.rotation[3:].any()
    assert not masks.rotation_mask(np.ones((20, 20, 20))).any()


def test_hat_mask_keeps_the_air_above_the_landmark_planes():
    head = np.zeros((20, 30, 40), bool)
    head[5:15, 5:25, 10:30] = True
    hat = masks.hat_mask(head, glabella_k=20.6, inion_k=12.2)
    assert not hat[:, :, :12].any() and hat[:, :, 12:].any()
    assert not hat[:, 15:, :20].any() and hat[:, :15, 12:20].any()  # front half cut at the glabella
    assert not (hat & head).any()
    # a plane below the grid (negative index) cuts nothing instead of wrapping around
    assert masks.hat_mask(head, -3.0, -3.0).sum() == (~head).sum()


def test_metrics_without_air_are_undefined_with_a_reason():
    skull_stripped = _phantom(seed=7, air=False)
    result = image_quality_metrics(skull_stripped)
    for name in ("fber", "qi_2"):
        assert math.isnan(result["iqms"][name]) and result["undefined"][name]
    assert np.isfinite(result["iqms"]["snr_wm"]) and np.isfinite(result["iqms"]["efc"])
    # zero air is all frame here (no air at all: MRIQC's median of nothing is NaN too); outside a
    # frame, zero air gives MRIQC's sentinel -1 when asked for
    assert "empty" in result["undefined"]["fber"]
    skull_stripped.rotation[:] = False
    assert image_quality_metrics(skull_stripped, mriqc_sentinels=True)["iqms"]["fber"] == -1.0
    assert "no signal outside the head" in image_quality_metrics(skull_stripped)["undefined"]["fber"]
    with pytest.raises(MetricUndefined) as info:
        image_quality_metrics(skull_stripped, on_undefined="raise")
    assert info.value.stage.startswith("iqm:")
    # no air mask at all (defacing with a tight field of view)
    no_hat = _phantom(seed=7)
    no_hat.hat[:] = False
    no_hat.air[:] = False
    result = image_quality_metrics(no_hat)
    for name in ("qi_1", "qi_2", "cnr", "snrd_total", "summary_bg_mean"):
        assert math.isnan(result["iqms"][name]), name
    assert "empty" in result["undefined"]["qi_1"]


def test_rpve_counts_the_background_as_mriqc_does():
    pv = np.zeros((3, 10, 10, 10))
    pv[2, 2:8, 2:8, 2:8] = 1.0  # 216 pure WM voxels
    pv[0, 0, 0, :] = 1.0
    pv[1, 9, 9, :] = 1.0
    # every voxel with fraction 0 adds 1 - 0: (216 + 784) / 216
    assert iqms.rpve(pv)["wm"] == pytest.approx(1000 / 216)
    pv[0] = 0.0
    with pytest.raises(MetricUndefined):
        iqms.rpve(pv)  # the CSF map is empty


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_iqms", REPO / "bench" / "bench_iqms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_iqm_equals_mriqc_on_the_same_arrays(phantom, phantom_iqms):
    python = os.environ.get("DEFACEBENCH_MRIQC_PYTHON")
    if not python:
        pytest.skip(
            "DEFACEBENCH_MRIQC_PYTHON (a Python with mriqc 24.0.2) is not set: "
            "the comparison with MRIQC's own code is not run"
        )
    bench = _bench_module()
    ours = image_quality_metrics(phantom, mriqc_sentinels=True)["iqms"]
    theirs = bench.mriqc_reference(phantom, python, iqms.fwhm_classic(phantom.image, phantom.brain, phantom.zooms))
    assert theirs["_mriqc_version"] == "24.0.2"
    rows = bench.comparison_rows(ours, theirs)
    differing = {row["iqm"]: (row["ours"], row["mriqc"]) for row in rows if row["relative_difference"] > 1e-6}
    assert differing == {}
    assert theirs["_rotation_mask_differences"] == 0
