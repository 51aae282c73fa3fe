"""Templates shipped inside installed PyPI packages, located at run time.

Nothing is downloaded: the head template and face mask come from the pydeface
wheel, the MNI152 2009c tissue maps from the nilearn wheel.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage


def _package_file(package: str, *parts: str) -> Path:
    path = Path(str(resources.files(package).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"{'/'.join(parts)} not found in the installed package {package}")
    return path


@lru_cache(maxsize=None)
def pydeface_head() -> Path:
    """PyDeface's head template with the face (``mean_reg2mean.nii.gz``, T1w, 1 mm)."""
    return _package_file("pydeface", "data", "mean_reg2mean.nii.gz")


@lru_cache(maxsize=None)
def pydeface_facemask() -> Path:
    """PyDeface's face mask on the head template's grid: 1 where tissue is kept, 0 in the face region it removes."""
    return _package_file("pydeface", "data", "facemask.nii.gz")


@lru_cache(maxsize=None)
def mni152(kind: str) -> Path:
    """nilearn's MNI152 2009 (ICBM 2009a/c symmetric) map: ``kind`` is ``t1``, ``gm`` or ``wm``."""
    if kind not in ("t1", "gm", "wm"):
        raise ValueError(f"unknown MNI152 map {kind!r}")
    return _package_file("nilearn", "datasets", "data", f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz")


@lru_cache(maxsize=None)
def mni152_intracranial() -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 2009 intracranial region (boolean mask) and its affine.

    nilearn's MNI152 2009 T1w is masked to the template's brain region, which
    includes the extracerebral CSF, so its support (``t1 > 0``, holes filled)
    is the template's intracranial space. It is the one definition shared by
    the NBV arm's skull fit (:func:`defacebench.analysis.skull.template_inner_skull_distance`)
    and the simulator's true VSCALING. Read-only arrays (cached).
    """
    template = nib.load(str(mni152("t1")))
    mask = ndimage.binary_fill_holes(np.asarray(template.dataobj) > 0)
    mask.setflags(write=False)
    affine = template.affine.copy()
    affine.setflags(write=False)
    return mask, affine


def mni152_intracranial_ml() -> float:
    """Volume of :func:`mni152_intracranial` in ml (1887 ml with nilearn 0.14)."""
    mask, affine = mni152_intracranial()
    return float(mask.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000)
