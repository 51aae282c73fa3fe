"""Array geometry helpers."""

import numpy as np
import pytest

from defacebench.arrays import bounding_box


def test_bounding_box_margin_is_clipped_to_the_array():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:5, 6:8, 10:13] = True
    assert bounding_box(mask) == (slice(2, 5), slice(6, 8), slice(10, 13))
    assert bounding_box(mask, margin=3) == (slice(0, 8), slice(3, 11), slice(7, 14))
    assert bounding_box(mask, margin=(1, 0, 2)) == (slice(1, 6), slice(6, 8), slice(8, 14))
    assert mask[bounding_box(mask)].all()


def test_bounding_box_of_an_empty_mask_is_an_error():
    with pytest.raises(ValueError):
        bounding_box(np.zeros((3, 3, 3), bool))
