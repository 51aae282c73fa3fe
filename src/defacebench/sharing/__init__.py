"""Shareable defaced datasets: one method's outputs as a complete BIDS dataset, checked by the BIDS validator.

:func:`build_share` writes ``<results>/share/<cohort>/<method>/`` (see
``docs/sharing.md``); :mod:`.validator` finds and runs the official
validator; :mod:`.options` holds the ``share:`` config block's defaults.

Names are loaded on first use: the workflow imports :mod:`.options` when it
parses the Snakefile, where a submit-only environment has no numpy or nibabel.
"""

from importlib import import_module

_HOMES = {
    "ShareError": "build",
    "ShareOutcome": "build",
    "build_share": "build",
    "random_labels": "build",
    "voxel_digest": "build",
    "FLAGS": "options",
    "SHARE_DEFAULTS": "options",
    "ShareConfigError": "options",
    "share_options": "options",
    "ValidationResult": "validator",
    "ValidatorUnavailable": "validator",
    "find_validator": "validator",
    "run_validator": "validator",
    "validate_if_wanted": "validator",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
