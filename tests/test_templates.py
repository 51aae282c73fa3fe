"""Templates read from installed packages."""

import numpy as np
import pytest

from defacebench.templates import mni152_intracranial, mni152_intracranial_ml, pydeface_facemask, pydeface_head


def test_mni152_intracranial_region_is_an_adult_intracranial_volume():
    mask, affine = mni152_intracranial()
    # MNI152 2009 is an enlarged average: its intracranial space is larger than a typical adult's (~1.5 l)
    assert 1700 < mni152_intracranial_ml() < 2100
    assert mask.dtype == bool and affine.shape == (4, 4)
    with pytest.raises(ValueError):
        mask[0, 0, 0] = True  # cached and shared: callers must not change it


def test_pydeface_templates_are_found():
    assert pydeface_head().exists() and pydeface_facemask().exists()
    assert np.isfinite(mni152_intracranial_ml())
