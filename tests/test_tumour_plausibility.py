"""Shape checks that turn an absurd tumour segmentation into a failure (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from defacebench.analysis.tumour_plausibility import tumour_plausibility

ZOOMS = (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def brain():
    """An ellipsoid 'brain' 140 x 170 x 120 mm on a 2 mm grid."""
    x, y, z = np.ogrid[-40:40, -48:48, -36:36]
    return (x / 35.0) ** 2 + (y / 42.5) ** 2 + (z / 30.0) ** 2 <= 1.0


def ball(shape, centre, radius):
    x, y, z = np.ogrid[tuple(slice(0, n) for n in shape)]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2


def test_a_compact_tumour_is_plausible_even_at_the_cortex(brain):
    deep = ball(brain.shape, (55, 48, 40), 10) & brain  # 20 mm radius, in one hemisphere
    superficial = ball(brain.shape, (70, 48, 40), 10) & brain  # touching the brain's edge
    for tumour in (deep, superficial):
        measures, reasons = tumour_plausibility(tumour, brain, ZOOMS)
        assert reasons == [], measures


def test_a_rim_is_flagged(brain):
    depth = ndimage.distance_transform_edt(brain, sampling=ZOOMS)
    rim = brain & (depth <= 5)
    upper_rim = rim.copy()
    upper_rim[..., :40] = False
    for artefact in (rim, upper_rim):
        measures, reasons = tumour_plausibility(artefact, brain, ZOOMS)
        assert any("surface" in r for r in reasons), measures


def test_a_midline_sheet_is_flagged(brain):
    sheet = np.zeros_like(brain)
    sheet[39:42, 20:76, :] = True  # 6 mm thick, 60 % of the length
    measures, reasons = tumour_plausibility(sheet & brain, brain, ZOOMS)
    assert any("midline" in r for r in reasons), measures
    assert not any("surface" in r for r in reasons)


def test_half_the_brain_is_flagged_as_too_large(brain):
    half = brain.copy()
    half[:40] = False
    measures, reasons = tumour_plausibility(half, brain, ZOOMS)
    assert any("of the brain" in r for r in reasons) and measures["brain_fraction"] > 0.4


def test_a_few_voxels_are_not_judged_by_shape(brain):
    speck = np.zeros_like(brain)
    speck[40, 0:96:8, 36] = True
    measures, reasons = tumour_plausibility(speck & brain, brain, ZOOMS)
    assert reasons == [] and "rim_surface_fraction" not in measures
