"""The FLAIR/T2w hyperintensity check of the tumour arm (issue 25), on synthetic brains."""

import numpy as np
import pytest
from scipy import ndimage

from defacebench.analysis import tumour_hyperintensity as H
from defacebench.overlap import dice

ZOOMS = (1.0, 1.0, 1.0)
CLASSES = np.array([0, 1, 2, 3, 4])


def _brain(flair_grey=1.2, flair_white=1.0, rim_artefact=0.0, seed=0, shape=(80, 80, 80)):
    """A ball brain: grey shell, white core, a small ventricle, a 9 mm tumour in the white matter."""
    grid = np.indices(shape)
    r = np.sqrt(((grid - 40) ** 2).sum(0))
    brain = r <= 36
    white = r <= 26
    csf = r <= 5
    tumour = np.sqrt(((grid - np.array([52, 40, 40])[:, None, None, None]) ** 2).sum(0)) <= 9
    rng = np.random.default_rng(seed)
    signal = {  # CSF, grey, white, tumour (WM = 1)
        "T1w": (0.3, 0.65, 1.0, 0.7),
        "ceT1w": (0.3, 0.65, 1.0, 1.3),
        "T2w": (2.6, 1.4, 1.0, 2.0),
        "FLAIR": (0.15, flair_grey, flair_white, 1.8),
    }
    images = {}
    for m, (c, g, w, t) in signal.items():
        x = np.where(brain, g, 0.0)
        x[white] = w
        x[csf] = c
        x[tumour] = t
        if m == "FLAIR" and rim_artefact:
            x[brain & (r > 34)] = rim_artefact  # a bright FLAIR rim at the skull-stripping edge
        images[m] = ((x + 0.03 * rng.standard_normal(shape)) * brain).astype(np.float32)
    return brain, images, tumour, r


@pytest.mark.parametrize("rim_flair", [1.8, 4.0])
def test_the_region_is_the_tumour_not_a_bright_rim(rim_flair):
    brain, images, tumour, r = _brain(rim_artefact=rim_flair)
    region, measures = H.hyperintense_region(images, brain, ZOOMS)
    assert dice(region, tumour) > 0.8
    assert not region[r > 30].any()
    if rim_flair > 2:  # as bright as a seed: seen, and refused as a rim
        assert any(not m["candidate"] and m["rim_share"] > 0.5 for m in measures)


def test_the_region_does_not_depend_on_intensity_scale_or_offset():
    brain, images, tumour, _ = _brain()
    region, _ = H.hyperintense_region(images, brain, ZOOMS)
    rescaled = {
        m: np.where(brain, x * k + b, 0).astype(np.float32)
        for (m, x), (k, b) in zip(images.items(), [(0.01, 3), (7, 50), (37, 100), (0.2, 9)])
    }
    again, _ = H.hyperintense_region(rescaled, brain, ZOOMS)
    assert region.any() and dice(again, region) > 0.99


def test_grey_and_white_matter_isointense_on_flair_is_not_a_tumour():
    """Real FLAIR protocols differ: on sub-gbm7294's grey and white matter are nearly isointense."""
    brain, images, tumour, _ = _brain(flair_grey=1.0, flair_white=1.05)
    region, _ = H.hyperintense_region(images, brain, ZOOMS)
    assert dice(region, tumour) > 0.8
    assert region.sum() < 1.5 * tumour.sum()


def test_no_hyperintensity_no_region():
    brain, images, tumour, _ = _brain()
    images["FLAIR"][tumour] = images["FLAIR"][~tumour & (images["T1w"] > 0.9)].mean()
    region, _ = H.hyperintense_region(images, brain, ZOOMS)
    assert not region.any()


def _posteriors(labels, tumour_class=3):
    """One-hot posteriors of ``labels``, with a weak ``tumour_class`` preference everywhere."""
    p = np.zeros(labels.shape + (5,), np.float32)
    p[..., 0] = 0.9
    p[..., tumour_class] = 0.1
    for k in range(1, 5):
        p[labels == k] = np.eye(5)[k]
    return p


def test_reconcile_keeps_the_forest_where_it_found_the_region_and_drops_what_is_far():
    brain, images, tumour, r = _brain()
    region, _ = H.hyperintense_region(images, brain, ZOOMS)
    labels = np.zeros(brain.shape, np.uint8)
    labels[tumour] = 2
    rim = brain & (r > 33)  # a rim labelled with the tumour
    labels[rim] = 2
    far = rim & (ndimage.distance_transform_edt(~region) > H.HYPERINTENSITY_SETTINGS["restrict_mm"])
    assert far.sum() > 0.5 * rim.sum()
    out, record = H.reconcile(labels, _posteriors(labels), CLASSES, region, ZOOMS)
    assert record["source"] == "forest" and record["dropped_ml"] > 0
    assert (out[tumour] == 2).all() and not out[far].any()


@pytest.mark.parametrize("forest", ["nothing", "midline"])
def test_reconcile_measures_the_region_when_the_forest_missed_it(forest):
    brain, images, tumour, _ = _brain()
    region, _ = H.hyperintense_region(images, brain, ZOOMS)
    labels = np.zeros(brain.shape, np.uint8)
    if forest == "midline":
        labels[38:41, 12:68, 25:55] = 3  # a sagittal sheet away from the tumour
    out, record = H.reconcile(labels, _posteriors(labels), CLASSES, region, ZOOMS)
    assert record["source"] == "hyperintensity"
    assert dice(out > 0, tumour) > 0.8
    assert set(np.unique(out[region])) == {3}  # the forest's preferred tumour class decides the compartment
    assert not out[~region].any()


def test_reconcile_without_a_region_keeps_the_forest():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:5, 2:5, 2:5] = 4
    out, record = H.reconcile(labels, _posteriors(labels), CLASSES, np.zeros(labels.shape, bool), ZOOMS)
    assert record["source"] == "forest" and (out == labels).all()


def test_enhancement_evidence_finds_the_enhancing_tumour_and_ignores_scale():
    brain, images, tumour, _ = _brain()
    z = H.enhancement_evidence(images, brain, ZOOMS)
    assert np.median(z[tumour]) > 5 and np.percentile(z[brain & ~tumour], 99) < 5
    rescaled = {**images, "ceT1w": images["ceT1w"] * 3.0, "T1w": images["T1w"] * 3.0}
    np.testing.assert_allclose(H.enhancement_evidence(rescaled, brain, ZOOMS), z, atol=1e-3)


@pytest.mark.parametrize("labelled,enhances,flagged", [(True, True, False), (False, True, True), (False, False, False)])
def test_an_enhancing_tumour_without_an_enhancing_label_is_flagged(labelled, enhances, flagged):
    from defacebench.analysis.tumour_plausibility import enhancement_plausibility

    brain, images, tumour, _ = _brain()
    if not enhances:  # a non-enhancing glioma: its ceT1w as dark as its T1w
        images["ceT1w"] = images["T1w"].copy()
    labels = np.where(tumour, 2, 0).astype(np.uint8)
    if labelled:
        labels[tumour & (images["ceT1w"] > 1.15)] = 4
    _, reasons = enhancement_plausibility(labels, H.enhancement_evidence(images, brain, ZOOMS), ZOOMS)
    assert bool(reasons) is flagged
