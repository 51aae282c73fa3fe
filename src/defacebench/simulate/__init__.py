"""Simulated study cohorts with ground truth, built from templates shipped in PyPI packages.

Heads (face, scalp) come from PyDeface's ``mean_reg2mean`` template, with the
skull's cortical bone drawn as a dark band around the intracranial region, and
brain tissue from nilearn's MNI152 2009 GM/WM maps registered into that head
once (:mod:`.anatomy`). Each subject is a random pose, field of view, smooth
non-linear deformation and mass effect of that anatomy (:mod:`.deform`) with
its own atrophy (:mod:`.subject`), white-matter lesions or glioblastoma
(:mod:`.pathology`), tissue contrast, bias field, Rician noise and slice
thickness (:mod:`.contrast`), written as a BIDS dataset with its ground truth
as derivatives (:mod:`.dataset`) and a contact sheet (:mod:`.figure`).

The exports are imported on first use (PEP 562), so that :mod:`.model_version` can be read where
the simulator's dependencies are not installed (the workflow's submit-only environment on a cluster).
"""

import importlib

_EXPORTS = {
    "COHORT_KINDS": ".subject",
    "prepare_anatomy": ".anatomy",
    "simulate_subject": ".subject",
    "write_dataset_files": ".dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
