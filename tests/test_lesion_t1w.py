"""The lesion arm's T1w on a FLAIR of another grid is registered to it, as LST's lpa coregisters (issue 24)."""

import nibabel as nib
import numpy as np
from scipy import ndimage

from defacebench.analysis.lesion import t1w_on_flair


def _head(shape, zooms, shift_mm=(0.0, 0.0, 0.0)):
    """A smooth blobby 'head' sampled on a grid of ``zooms`` (RAS), its content moved by ``shift_mm``."""
    rng = np.random.default_rng(7)
    fine = ndimage.gaussian_filter(rng.normal(size=(96, 96, 96)), 4)  # 1 mm texture, world centred
    ball = np.sqrt(((np.indices((96, 96, 96)) - 47.5) ** 2).sum(0)) < 40
    fine = np.where(ball, 100 + 400 * (fine - fine.min()) / np.ptp(fine), 0).astype(np.float32)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(zooms)
    ijk = np.indices(shape).reshape(3, -1)
    xyz = nib.affines.apply_affine(affine, ijk.T) - np.array(shift_mm)
    data = ndimage.map_coordinates(fine, (xyz + 47.5).T, order=1).reshape(shape)
    return data.astype(np.float32), nib.Nifti1Image(data.astype(np.float32), affine)


def test_a_t1w_on_another_grid_is_registered_to_the_flair():
    flair, flair_c = _head((64, 64, 24), (1.5, 1.5, 4.0))
    flair = np.where(flair > 0, 600 - flair, 0).astype(np.float32)  # another contrast: mutual information
    flair_c = nib.Nifti1Image(flair, flair_c.affine)
    t1, t1_c = _head((48, 48, 48), (2.0, 2.0, 2.0), shift_mm=(0.0, 2.0, 3.0))  # the head moved between scans
    inside = flair > 0

    def fit(out):
        return abs(np.corrcoef(out[inside], flair[inside])[0, 1])

    by_affines, how = t1w_on_flair(t1, t1_c, flair, flair_c, register=False, threads=1)
    assert "by the affines" in how
    registered, how = t1w_on_flair(t1, t1_c, flair, flair_c, register=True, threads=1)
    assert how.startswith("registered rigidly") and registered.shape == flair.shape
    assert fit(registered) > 0.9 and fit(registered) > fit(by_affines) + 0.1
    same, how = t1w_on_flair(flair, flair_c, flair, flair_c, register=True, threads=1)
    assert same is flair and how == "on the FLAIR's grid"
