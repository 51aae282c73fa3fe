"""antspyx (Avants et al. 2011, NeuroImage 54:2033; Tustison et al. 2021, Sci Rep 11:9068), imported lean.

``import ants`` also imports its ``learn``, ``plotting``, ``math`` and ``deeplearn`` subpackages
(scikit-learn decompositions, matplotlib, statsmodels, the ANTsXNet model zoo), which this package
never calls: most of the import time, paid by every Snakemake job (0.5 s instead of 3.2 s warm here,
more from a cold disk). :func:`import_ants` imports antspyx with those subpackages held back; the
first access to one of their functions (``ants.plot``, ``ants.quantile``, ...) imports them, so the
module behaves as a full import for any later caller in the same process.
"""

from __future__ import annotations

import importlib
import sys
import types

#: Subpackages of antspyx that ``ants/__init__.py`` star-imports and this package does not use.
DEFERRED_SUBPACKAGES = ("learn", "plotting", "math", "deeplearn")


def import_ants() -> types.ModuleType:
    """The ``ants`` module, imported without :data:`DEFERRED_SUBPACKAGES` unless already imported.

    Falls back to a plain ``import ants`` when antspyx's layout does not allow the lean import
    (another antspyx version), so the lean import can cost speed but never correctness.
    """
    if "ants" in sys.modules:
        return sys.modules["ants"]
    placeholders = {f"ants.{name}": types.ModuleType(f"ants.{name}") for name in DEFERRED_SUBPACKAGES}
    sys.modules.update(placeholders)
    try:
        import ants
    except Exception:
        _forget_ants()
        import ants

        return ants
    finally:
        for name, placeholder in placeholders.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]
    for name in DEFERRED_SUBPACKAGES:
        # the star-import bound the placeholders as attributes; without them the real subpackage loads
        if getattr(ants, name, None) is placeholders[f"ants.{name}"]:
            delattr(ants, name)
    ants.__getattr__ = _deferred_attribute
    return ants


def image_from_array(data, affine):
    """A float32 ANTs image of ``data`` on the grid of the voxel-to-world ``affine`` (any orientation).

    Through nibabel (``ants.from_nibabel_nifti``), with the units set to millimetres so that antspyx
    does not warn about unknown units on every image.
    """
    import nibabel as nib
    import numpy as np

    img = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    return import_ants().from_nibabel_nifti(img)


def _deferred_attribute(name: str):
    """PEP 562 hook on ``ants``: a name from a held-back subpackage imports that subpackage."""
    ants = sys.modules["ants"]
    for subpackage in DEFERRED_SUBPACKAGES:
        module = importlib.import_module(f"ants.{subpackage}")
        if name == subpackage:
            return module
        if hasattr(module, name):
            value = getattr(module, name)
            setattr(ants, name, value)
            return value
    raise AttributeError(f"module 'ants' has no attribute {name!r}")


def _forget_ants() -> None:
    for name in [n for n in sys.modules if n == "ants" or n.startswith("ants.")]:
        del sys.modules[name]
