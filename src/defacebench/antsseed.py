"""Deterministic ANTs registrations from antspyx.

ANTs' affine metrics sample a random subset of voxels (``aff_random_sampling_rate``).
antspyx 0.6 ignores ``ants.registration(random_seed=...)``: the sampler is seeded
only through the module-level ``ants.config._random_seed``. Left unseeded, the
same registration run twice gave volume scalings ~4 % apart here, which would make
a study's numbers irreproducible, so every registration in defacebench runs inside
:func:`seeded`.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def seeded(seed: int):
    """Run the block with antspyx's registration sampler seeded by ``seed``; restore the previous seed after."""
    from .antslib import import_ants

    ants = import_ants()

    previous, ants.config._random_seed = ants.config._random_seed, int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = previous
