"""Simulated study cohorts with ground truth, built from templates shipped in PyPI packages.

Heads (face, skull, scalp) come from PyDeface's ``mean_reg2mean`` template and
brain tissue from nilearn's MNI152 2009 GM/WM maps registered into that head
(:mod:`.anatomy`, run once). Each subject is a random, smooth, non-linear
deformation and pose of that anatomy with its own atrophy, lesions or tumour,
tissue contrast, bias field, Rician noise and field of view
(:mod:`.subject`), written as a BIDS dataset with its ground truth as
derivatives (:mod:`.dataset`).
"""

from .anatomy import prepare_anatomy
from .dataset import write_dataset_files
from .subject import COHORT_KINDS, simulate_subject

__all__ = ["COHORT_KINDS", "prepare_anatomy", "simulate_subject", "write_dataset_files"]
