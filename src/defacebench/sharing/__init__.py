"""Shareable defaced datasets: one method's outputs as a complete BIDS dataset, checked by the BIDS validator.

:func:`build_share` writes ``<results>/share/<cohort>/<method>/`` (see
``docs/sharing.md``); :mod:`.validator` finds and runs the official
validator; :mod:`.options` holds the ``share:`` config block's defaults.
"""

from .build import ShareError, ShareOutcome, build_share, random_labels, voxel_digest
from .options import FLAGS, SHARE_DEFAULTS, ShareConfigError, share_options
from .validator import (ValidationResult, ValidatorUnavailable, find_validator, run_validator,
                        validate_if_wanted)

__all__ = ["FLAGS", "SHARE_DEFAULTS", "ShareConfigError", "ShareError", "ShareOutcome", "ValidationResult",
           "ValidatorUnavailable", "build_share", "find_validator", "random_labels", "run_validator",
           "share_options", "validate_if_wanted", "voxel_digest"]
