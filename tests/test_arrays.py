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


def test_box_affine_is_nibabels_crop_affine():
    import nibabel as nib

    from defacebench.arrays import box_affine

    affine = np.array([[-0.9, 0.1, 0.0, 90.0], [0.05, 1.1, 0.2, -126.0], [0.0, -0.1, 3.0, -72.0], [0, 0, 0, 1]])
    box = (slice(3, 9), slice(0, 5), slice(2, 4))
    img = nib.Nifti1Image(np.zeros((10, 12, 5), np.uint8), affine)
    assert np.allclose(box_affine(affine, box), img.slicer[box].affine)


def test_uncrop_puts_the_box_back():
    from defacebench.arrays import uncrop

    full = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    box = (slice(1, 3), slice(2, 5), slice(0, 4))
    back = uncrop(full[box], box, full.shape)
    assert back.dtype == full.dtype and back.shape == full.shape
    assert np.array_equal(back[box], full[box]) and back.sum() == full[box].sum()
