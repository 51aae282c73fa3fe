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
"""

from .anatomy import prepare_anatomy
from .dataset import write_dataset_files
from .subject import COHORT_KINDS, simulate_subject

__all__ = ["COHORT_KINDS", "prepare_anatomy", "simulate_subject", "write_dataset_files"]
