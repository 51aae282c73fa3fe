"""Tumour arm (GBV): inputs, the shipped forest, a phantom/simulated subject, and sub-gbm7294."""

import json
from importlib import resources

import nibabel as nib
import numpy as np
import pytest

from defacebench.analysis import tumour as T
from defacebench.analysis import tumour_features as tfeat
from defacebench.analysis import tumour_hyperintensity as thyper
from defacebench.overlap import dice
from defacebench.analysis.tumour_forest import MODEL_FILE, load_forest, predict_proba
from defacebench.records import AnalysisFailure


def _noise(seed=0, shape=(20, 20, 20)):
    return nib.Nifti1Image(np.random.default_rng(seed).random(shape, dtype=np.float32), np.eye(4))


@pytest.mark.parametrize("missing", ["T1w", "ceT1w", "T2w", "FLAIR"])
def test_missing_modality_is_a_study_failure(missing):
    images = {m: _noise(i) for i, m in enumerate(T.MODALITIES) if m != missing}
    with pytest.raises(AnalysisFailure) as err:
        T.glioblastoma_volume(images)
    assert err.value.stage == "input" and missing in err.value.reason


def test_command_backend_volumes(tmp_path):
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:10, 5:10, 5:10] = 2  # 125 voxels oedema
    labels[6:8, 6:8, 6:8] = 4  # 8 voxels enhancing
    src = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), src)
    images = {m: _noise(i, (30, 30, 30)) for i, m in enumerate(T.MODALITIES)}
    out = T.glioblastoma_volume(images, backend="command", command=f"cp {src} {{output}}")
    assert out["value"] == pytest.approx(0.008)
    assert out["whole_tumour_ml"] == pytest.approx(0.125)
    np.testing.assert_array_equal(np.asarray(out["segmentation"].dataobj), labels)  # the label map it measured
    with pytest.raises(AnalysisFailure):
        T.glioblastoma_volume(images, backend="command", command="exit 3")


def test_features_on_the_brain_box_equal_whole_grid_features():
    """prepare() crops to the brain's box: its features are the whole grid's, but the 8 mm contrast near the box's edge.

    With a margin for the 8 mm Gaussian (pathology_common.filter_margin) all are equal bit for bit.
    """
    from defacebench.analysis.pathology_common import filter_margin
    from defacebench.arrays import bounding_box

    shape, zooms = (100, 110, 100), (1.0, 1.0, 1.0)
    rng = np.random.default_rng(3)
    grid = np.meshgrid(*[np.arange(n) - 0.5 * n for n in shape], indexing="ij")
    mask = np.sqrt(sum((g / a) ** 2 for g, a in zip(grid, (25.0, 30.0, 22.0)))) < 1.0
    standardised = {
        m: np.where(mask, 1.0 + 0.2 * rng.standard_normal(shape), 0.0).astype(np.float32) for m in tfeat.MODALITY_ORDER
    }
    whole = tfeat.tumour_features(standardised, mask, zooms)

    def on_box(margin):
        box = bounding_box(mask, margin=margin)
        return box, tfeat.tumour_features({m: x[box] for m, x in standardised.items()}, mask[box], zooms)

    box, features = on_box(T.BOX_MARGIN)
    for name in tfeat.FEATURE_NAMES:
        equal = np.array_equal(features[name], whole[name][box])
        assert equal != name.endswith("_contrast8"), name
    box, features = on_box(filter_margin(8.0, zooms))
    assert all(np.array_equal(features[name], whole[name][box]) for name in tfeat.FEATURE_NAMES)


def test_registered_images_resampled_onto_the_box_equal_the_whole_grids_box():
    """prepare() resamples the registered modalities onto the brain's box only: the same values, bit for bit."""
    from scipy import ndimage

    from defacebench.analysis import pathology_common as pc
    from defacebench.antslib import image_from_array
    from defacebench.arrays import box_affine

    rng = np.random.default_rng(5)
    fixed = ndimage.gaussian_filter(rng.random((60, 64, 56), dtype=np.float32), 3) * 100
    affine = np.diag([1.0, 1.0, 1.2, 1.0])
    moving_affine = affine.copy()
    moving_affine[:3, 3] = (1.5, -2.0, 0.5)  # the same head, shifted
    box = (slice(7, 50), slice(11, 60), slice(3, 41))
    fixed_ants, moving_ants = image_from_array(fixed, affine), image_from_array(fixed, moving_affine)
    transforms = pc.register(fixed_ants, moving_ants, "Rigid", 1, resolution_mm=2.0)
    whole = pc.apply_transforms(fixed_ants, moving_ants, transforms)
    on_box = pc.apply_transforms(image_from_array(fixed[box], box_affine(affine, box)), moving_ants, transforms)
    assert np.array_equal(on_box, whole[box])
    registered = pc.rigid_registrar(fixed, affine, box)(fixed, moving_affine)
    assert registered.shape == fixed[box].shape


def test_shipped_forest_loads_and_predicts():
    path = resources.files("defacebench").joinpath("data", MODEL_FILE)
    assert path.stat().st_size < 2_000_000
    model = load_forest()
    meta = model["metadata"]
    assert tuple(meta["feature_names"]) == tfeat.FEATURE_NAMES
    assert set(model["classes"].tolist()) <= {0, 1, 2, 3, 4}
    assert meta["training"]["seed"] not in (101, 202, 303)
    proba = predict_proba(model, np.zeros((10, len(tfeat.FEATURE_NAMES)), np.float32))
    assert proba.shape == (10, len(model["classes"]))
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-2)
    readme = resources.files("defacebench").joinpath("data", "README.md").read_text()
    assert MODEL_FILE in readme


def test_shipped_forest_was_fitted_on_the_simulator():
    training = load_forest()["metadata"]["training"]
    assert training["source"] == "simulator"
    assert training["seed"] == 9001 and training["n_subjects"] >= 8
    # fitting-cohort core Dice at the chosen post-processing: measured 0.946 on the realistic glioma
    # simulator (heterogeneous tumours, graded oedema, weak enhancement in some); 0.98 on the earlier one
    post = load_forest()["metadata"]["postprocessing"]
    scores = training["fitting_core_dice_by_postprocessing"]
    chosen = f"sigma {float(post['sigma_mm'])}, {'largest component' if post['largest_component_only'] else 'all components'}"
    assert scores[chosen] == max(scores.values()) > 0.9


def _two_tumour_posteriors(shape=(40, 40, 40)):
    """Posteriors with a large (core + oedema) and a small (core only) tumour, far apart."""
    grid = np.indices(shape)
    big = ((grid - np.array([12, 20, 20])[:, None, None, None]) ** 2).sum(0) <= 6**2
    small = ((grid - np.array([31, 20, 20])[:, None, None, None]) ** 2).sum(0) <= 3**2
    big_core = ((grid - np.array([12, 20, 20])[:, None, None, None]) ** 2).sum(0) <= 3**2
    posteriors = np.zeros(shape + (5,), np.float32)
    posteriors[..., 0] = 1.0
    posteriors[big] = [0.1, 0.0, 0.9, 0.0, 0.0]  # oedema
    posteriors[big_core] = [0.1, 0.0, 0.0, 0.0, 0.9]  # enhancing
    posteriors[small] = [0.1, 0.9, 0.0, 0.0, 0.0]  # necrosis
    return posteriors, big, small


@pytest.mark.parametrize("largest_only", [False, True])
def test_regularise_keeps_every_tumour_or_the_largest_only(largest_only):
    posteriors, big, small = _two_tumour_posteriors()
    mask = np.ones(big.shape, bool)
    labels = tfeat.regularise(
        posteriors,
        [0, 1, 2, 3, 4],
        mask,
        (1.0, 1.0, 1.0),
        sigma_mm=0.0,
        min_tumour_ml=0.05,
        largest_component_only=largest_only,
    )
    assert (labels[big] > 0).all()
    if largest_only:
        assert not labels[small].any()
    else:
        assert (labels[small] > 0).all()
    assert not labels[~(big | small)].any()


def test_postprocessing_of_a_model_file_without_the_largest_component_setting():
    """A forest written before the settings existed keeps every tumour component and selects none, as it did."""
    old = {"metadata": {"postprocessing": {"sigma_mm": 1.5, "min_tumour_ml": 0.5}}}
    assert T.postprocessing(old) == {
        "sigma_mm": 1.5,
        "min_tumour_ml": 0.5,
        "largest_component_only": False,
        "component_selection": False,
    }
    assert T.postprocessing(old, sigma_mm=0.0, largest_component_only=None)["sigma_mm"] == 0.0


def test_forest_metadata_rewritten_without_refitting(tmp_path):
    from defacebench.analysis.tumour_forest import write_forest

    model = load_forest()
    metadata = {**model["metadata"], "postprocessing": {**model["metadata"]["postprocessing"], "sigma_mm": 0.5}}
    path = write_forest(model, tmp_path / "forest.npz", metadata)
    again = load_forest(str(path))
    assert again["metadata"]["postprocessing"]["sigma_mm"] == 0.5
    for name in ("left", "right", "feature", "threshold", "value", "roots", "classes"):
        assert np.array_equal(again[name], model[name])


def test_exported_forest_predicts_like_scikit_learn(tmp_path):
    """The node-by-node walk of an exported forest gives scikit-learn's probabilities (float16 leaves aside)."""
    from sklearn.ensemble import RandomForestClassifier

    from defacebench.analysis.tumour_forest import export_forest

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.5).astype(int) + (X[:, 2] > 1).astype(int)
    forest = RandomForestClassifier(n_estimators=5, max_depth=8, random_state=0).fit(X, y)
    path = export_forest(forest, tmp_path / "forest.npz", {"feature_names": list("abcde")})
    model = load_forest(path)
    X_new = rng.normal(size=(2000, 5)).astype(np.float32)
    assert np.abs(predict_proba(model, X_new) - forest.predict_proba(X_new)).max() < 2e-3


def test_phantom_subject_core_dice():
    """A 2 mm phantom (or simulated) glioma not used for fitting: core Dice above a floor."""
    from defacebench.analysis.pathology_training import VALIDATION_SEED, training_cohort
    from defacebench.overlap import truth_on_grid

    name, images, truth_img, _ = next(
        training_cohort("glioma", 1, VALIDATION_SEED, "/tmp/dfb-test", {"resolution_mm": 2.0}, source="phantom")
    )
    seg = T.segment_tumour(images, threads=2)
    assert seg.shape == images["T1w"].shape
    truth = truth_on_grid(truth_img, images["T1w"])
    pred = nib.as_closest_canonical(seg).get_fdata()
    assert dice(np.isin(pred, tfeat.CORE_LABELS), np.isin(truth, tfeat.CORE_LABELS)) > 0.6, name


@pytest.mark.realdata
def test_gbm7294_core_dice(real_bids):
    anat = real_bids / "sub-gbm7294" / "anat"
    names = {"T1w": "T1w", "ceT1w": "ce-gadolinium_T1w", "T2w": "T2w", "FLAIR": "FLAIR"}
    images = {m: nib.load(anat / f"sub-gbm7294_{n}.nii.gz") for m, n in names.items()}
    seg = T.segment_tumour(images, threads=2)
    labels = np.asarray(seg.dataobj)
    ref = np.asarray(
        nib.load(real_bids / "derivatives/reference-masks/sub-gbm7294/anat/sub-gbm7294_desc-tumour_dseg.nii.gz").dataobj
    )
    core_ref = np.isin(ref, (1, 3, 4))  # BraTS core: necrosis/non-enhancing (1) and enhancing (4)
    core = np.isin(labels, tfeat.CORE_LABELS)
    # target 0.7, NOT met by the simulator-fitted forest: measured once after each change
    # (bench/bench_lesion_tumour.py): core 0.395, whole tumour 0.579 keeping every tumour component;
    # 0.672 and 0.937 keeping the largest only (chosen on the simulated fitting cohort: the other
    # components were cerebellar cortex and ventricle walls); these floors guard regressions
    assert dice(core, core_ref) > 0.6
    assert dice(labels > 0, ref > 0) > 0.85


@pytest.mark.parametrize("shrink_factor", [None, T.N4_SHRINK_FACTOR])
def test_n4_removes_a_smooth_bias_at_the_tumour_arms_shrink_factor(shrink_factor):
    """Two tissue shells under a 1.5-fold linear bias: the inner class comes out as flat as its noise.

    At the default and at the tumour arm's shrink factor (1 mm grid, as in the arm). The darkest
    class is 60 % of the brightest: shifting every voxel by the brain's minimum before N4 (as
    this package once did) left the inner class 1.2 times as uneven as before correction.
    """
    from defacebench.analysis.pathology_common import n4_correct

    grid = np.indices((72, 72, 72), dtype=np.float32)
    radius = np.sqrt(((grid - 35.5) ** 2).sum(axis=0))
    mask = radius < 33
    tissue = np.where(radius < 20, 100.0, 60.0) + np.random.default_rng(0).normal(0, 2, radius.shape)
    data = np.where(mask, tissue * (0.75 + 0.5 * grid[0] / 71.0), 0.0).astype(np.float32)
    corrected = n4_correct(data, np.eye(4), mask, threads=1, shrink_factor=shrink_factor)
    inner = radius < 18

    def spread(x):  # coefficient of variation of the inner class; its noise alone gives 0.02
        return float(np.std(x[inner]) / np.mean(x[inner]))

    assert spread(data) > 0.055
    assert spread(corrected) < 0.025, spread(corrected)


def test_n4_fits_positive_voxels_only_and_corrects_the_rest():
    """Negative undershoot inside the brain (resampled skull-stripped scans) is left out of the fit, then corrected."""
    from defacebench.analysis.bias import positive_for_n4
    from defacebench.analysis.pathology_common import n4_correct

    grid = np.indices((64, 64, 64), dtype=np.float32)
    radius = np.sqrt(((grid - 31.5) ** 2).sum(axis=0))
    mask = radius < 29
    tissue = np.where(radius < 18, 100.0, 60.0) + np.random.default_rng(1).normal(0, 2, radius.shape)
    tissue[(radius > 27) & (grid[2] % 7 == 0)] = -20.0  # a rim of undershoot, as after spline resampling
    bias = 0.75 + 0.5 * grid[0] / 63.0
    data = np.where(mask, tissue * bias, 0.0).astype(np.float32)
    fit, positive = positive_for_n4(data, mask)
    assert not fit[data <= 0].any() and fit[mask & (data > 0)].all()
    assert (positive > 0).all()
    corrected = n4_correct(data, np.eye(4), mask, threads=1)
    inner = radius < 16
    assert np.std(corrected[inner]) / np.mean(corrected[inner]) < 0.025
    # the undershoot keeps its sign and is divided by the same smooth field as its neighbours
    rim = mask & (data < 0)
    ratio = corrected[rim] / data[rim]
    assert (ratio > 0).all() and np.corrcoef(ratio, 1.0 / bias[rim])[0, 1] > 0.9
    with pytest.raises(AnalysisFailure):
        positive_for_n4(-np.abs(data), mask)


def _selection_case(shape=(60, 60, 60)):
    """A brain ball with a hyperintense compact tumour, a larger rim shell and a midline sheet labelled."""
    grid = np.indices(shape)
    r = np.sqrt(((grid - 30) ** 2).sum(0))
    brain = r <= 27
    tumour = np.sqrt(((grid - np.array([41, 30, 30])[:, None, None, None]) ** 2).sum(0)) <= 7
    rim = brain & (r >= 24) & (grid[2] > 30)
    sheet = brain & (np.abs(grid[0] - 30) <= 1) & (r < 20) & ~tumour
    labels = np.zeros(shape, np.uint8)
    labels[rim] = 2
    labels[sheet] = 3
    labels[tumour] = 2
    labels[tumour & (np.sqrt(((grid - np.array([41, 30, 30])[:, None, None, None]) ** 2).sum(0)) <= 3)] = 1
    flair = np.where(brain, 1.0, 0.0) + 0.05 * np.random.default_rng(0).standard_normal(shape)
    flair[tumour] = 1.8
    flair[rim] = 1.15
    return brain, labels, {"FLAIR": (flair * brain).astype(np.float32)}, tumour, rim, sheet


def test_component_selection_keeps_the_hyperintense_tumour_not_the_rim_or_a_sheet():
    brain, labels, standardised, tumour, rim, sheet = _selection_case()
    evidence = tfeat.flair_evidence(standardised, brain, (1.0, 1.0, 1.0))
    assert rim.sum() > tumour.sum()  # the rim is larger: size alone would keep it
    selected, measures = tfeat.select_tumour(labels, evidence, brain, (1.0, 1.0, 1.0))
    assert (selected[tumour] > 0).all()
    assert not selected[rim & ~tumour].any() and not selected[sheet].any()
    assert sum(m["kept"] for m in measures) == 1
    # a sheet as bright as the tumour is still dropped: it is thin
    standardised["FLAIR"][sheet] = 1.8
    evidence = tfeat.flair_evidence(standardised, brain, (1.0, 1.0, 1.0))
    selected, _ = tfeat.select_tumour(labels, evidence, brain, (1.0, 1.0, 1.0), largest_component_only=False)
    assert not selected[sheet].any() and (selected[tumour] > 0).all()


def test_component_selection_drops_a_tumour_without_flair_signal():
    brain, labels, standardised, tumour, _, _ = _selection_case()
    standardised["FLAIR"][tumour] = 1.0
    evidence = tfeat.flair_evidence(standardised, brain, (1.0, 1.0, 1.0))
    selected, _ = tfeat.select_tumour(labels, evidence, brain, (1.0, 1.0, 1.0))
    assert not selected.any()


def test_flair_evidence_does_not_depend_on_the_image_scale():
    brain, _, standardised, _, _, _ = _selection_case()
    a = tfeat.flair_evidence(standardised, brain, (1.0, 1.0, 1.0))
    b = tfeat.flair_evidence({"FLAIR": standardised["FLAIR"] * 37.0}, brain, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_real_scan_confounders_touch_the_brain_edge_and_midline_only():
    from defacebench.analysis.pathology_training import real_scan_confounders
    from defacebench.simulate.anatomy import CSF, GM, WM

    shape = (41, 41, 41)
    grid = np.indices(shape)
    r = np.sqrt(((grid - 20) ** 2).sum(0))
    brain = r <= 18
    dseg = np.where(brain, WM, 0).astype(np.uint8)
    dseg[brain & (r > 14)] = GM
    dseg[brain & (np.abs(grid[0] - 20) <= 1) & (grid[2] > 28)] = CSF  # the interhemispheric fissure
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = 20.0
    images = {m: np.where(brain, 100.0, 0.0).astype(np.float32) for m in T.MODALITIES}
    out = real_scan_confounders(images, brain, dseg, affine, np.random.default_rng(1))
    deep = r <= 6
    for m in T.MODALITIES:
        assert np.allclose(out[m][deep], images[m][deep], rtol=0.02)
    changed = np.abs(out["ceT1w"] - images["ceT1w"]) > 5
    assert changed[brain & (r > 15)].any()  # dura at the edge
    assert np.allclose(out["T2w"], images["T2w"])


def test_real_scan_confounders_vary_grey_white_contrast_both_ways():
    from defacebench.analysis.pathology_training import REAL_SCAN_CONFOUNDERS, real_scan_confounders
    from defacebench.simulate.anatomy import GM, WM

    shape = (33, 33, 33)
    r = np.sqrt(((np.indices(shape) - 16) ** 2).sum(0))
    brain = r <= 15
    dseg = np.where(brain, WM, 0).astype(np.uint8)
    dseg[(r > 8) & (r <= 11.5)] = GM  # below the edge's shell (at most 3 mm deep): no dura or FLAIR rim
    ratio = {"T1w": 0.75, "ceT1w": 0.75, "T2w": 1.25, "FLAIR": 1.15}
    images = {m: np.where(dseg == GM, 100.0 * ratio[m], np.where(brain, 100.0, 0.0)).astype(np.float32) for m in ratio}
    seen = {m: [] for m in ratio}
    for seed in range(40):
        out = real_scan_confounders(images, brain, dseg, np.eye(4), np.random.default_rng(seed))
        for m in ratio:
            gm, wm = np.median(out[m][dseg == GM]), np.median(out[m][r <= 7])
            seen[m].append(np.log(gm / wm) / np.log(ratio[m]))
    for m in ratio:  # the power applied to the GM/WM log-ratio: above and below 1, within the stated range
        lo, hi = REAL_SCAN_CONFOUNDERS["t1_gamma" if m in ("T1w", "ceT1w") else "t2_gamma"]
        assert min(seen[m]) < 0.9 and max(seen[m]) > 1.1, m
        assert lo - 0.05 < min(seen[m]) and max(seen[m]) < hi + 0.05, m


def test_thick_slices_and_bias_field():
    from defacebench.analysis.pathology_training import bias_field, thick_slices

    data = np.zeros((20, 20, 20), np.float32)
    data[:, :, 10] = 1.0
    blurred = thick_slices(data, axis=2)
    assert blurred[:, :, 10].max() < 1.0 and blurred[:, :, 8:13].sum() > 0
    field = bias_field((10, 12, 14), np.random.default_rng(0), 0.25)
    assert field.shape == (10, 12, 14) and 0.77 < field.min() and field.max() < 1.29


def _prep_for_standardisation(seed=4):
    rng = np.random.default_rng(seed)
    shape = (40, 40, 40)
    r = np.sqrt(((np.indices(shape) - 20) ** 2).sum(0))
    mask = r <= 18
    tissue = np.where(r <= 4, 0.25, np.where(r <= 12, 1.0, 0.65))  # CSF core, WM, GM
    corrected = {}
    for m in T.MODALITIES:
        contrast = {0.25: 2.6, 1.0: 1.0, 0.65: 1.45} if m == "T2w" else {0.25: 0.28, 1.0: 1.0, 0.65: 0.64}
        img = np.vectorize(contrast.get)(tissue) * (1 + 0.02 * rng.standard_normal(shape))
        corrected[m] = np.where(mask, img * 300, 0).astype(np.float32)
    reference = mask & (r > 5) & (r <= 11)
    return {"corrected": corrected, "reference": reference, "mask": mask, "zooms": (1.0, 1.0, 1.0)}


def test_wm_csf_standardisation_is_invariant_to_scale_and_offset():
    prep = _prep_for_standardisation()
    a = T.standardise(prep, "wm-csf")["standardised"]
    shifted = {m: np.where(prep["mask"], x * 0.07 + 150.0, 0).astype(np.float32) for m, x in prep["corrected"].items()}
    b = T.standardise({**prep, "corrected": shifted}, "wm-csf")["standardised"]
    for m in T.MODALITIES:
        np.testing.assert_allclose(a[m], b[m], atol=2e-3)
        assert np.median(a[m][prep["reference"]]) == pytest.approx(1.0, abs=1e-3)
    ratio_a = T.standardise(prep, "wm-ratio")["standardised"]["FLAIR"]
    ratio_b = T.standardise({**prep, "corrected": shifted}, "wm-ratio")["standardised"]["FLAIR"]
    assert np.abs(ratio_a - ratio_b).max() > 0.3  # the one-landmark ratio is not


def test_a_model_refuses_intensities_standardised_otherwise():
    prep = T.standardise(_prep_for_standardisation(), "wm-csf")
    model = {**load_forest(), "metadata": {**load_forest()["metadata"], "standardisation": "wm-ratio"}}
    with pytest.raises(ValueError, match="standardis|intensities"):
        T.forest_posteriors(prep, model)


def test_no_tumour_found_is_a_failure_not_zero_ml(monkeypatch):
    shape = (20, 20, 20)
    canonical = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    info = {"canonical": canonical, "brain": np.ones(shape, bool), "brain_mask": "x", "brain_mask_details": {}}
    monkeypatch.setattr(T, "_segment_canonical", lambda images, **kw: (np.zeros(shape, np.uint8), info))
    images = {m: canonical for m in T.MODALITIES}
    with pytest.raises(AnalysisFailure) as err:
        T.glioblastoma_volume(images)
    assert err.value.stage == "plausibility" and "no tumour" in err.value.reason


@pytest.mark.parametrize("hyperintensity", [True, False])
def test_the_record_says_whose_tumour_was_measured(monkeypatch, hyperintensity):
    shape = (40, 40, 40)
    canonical = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    labels = np.zeros(shape, np.uint8)
    labels[15:25, 15:25, 15:25] = 2
    labels[18:22, 18:22, 18:22] = 4
    check = {"source": "hyperintensity", "hyperintense_ml": 1.0, "forest_overlap": 0.0}
    info = {
        "canonical": canonical,
        "brain": np.ones(shape, bool),
        "brain_mask": "x",
        "brain_mask_details": {},
        "model": load_forest(),
        "hyperintensity_check": check,
    }
    seen = {}

    def segment(images, **kw):
        seen.update(kw)
        return labels, info

    monkeypatch.setattr(T, "_segment_canonical", segment)
    out = T.glioblastoma_volume({m: canonical for m in T.MODALITIES}, hyperintensity=hyperintensity)
    assert seen["hyperintensity"] is hyperintensity
    assert out["tumour_source"] == "hyperintensity"
    assert json.loads(out["hyperintensity_check"]) == check
    recorded = json.loads(out["parameters"])["hyperintensity_check"]
    assert (recorded == dict(thyper.HYPERINTENSITY_SETTINGS)) if hyperintensity else recorded is False
