"""The ``share:`` block of a study configuration: its defaults and the checks a JSON schema cannot make.

The workflow's schema (``workflow/schemas/config.schema.yaml``) checks types;
:func:`share_options` repeats the checks that matter for a direct call of the
package and names the key at fault, so a bad value never half-builds a share.
"""

from __future__ import annotations

#: Privacy flags an image can carry after defacing (see :func:`defacebench.sharing.build.image_flags`).
#: ``face_detected``: a face was still found on the frontal render of the defaced head;
#: ``brain_changed``: defacing changed more of the brain than ``max_brain_changed_fraction``;
#: ``unchanged``: the defaced image's voxels equal the full image's (a full image in all but name).
FLAGS = ("face_detected", "brain_changed", "unchanged")

#: Values of ``validate``: run the official BIDS validator when found (auto), always (true: an
#: absent validator is an error) or never (false).
VALIDATE_CHOICES = ("auto", True, False)

SHARE_DEFAULTS = {
    "method": None,
    "cohorts": None,  # None: every cohort of the study
    # participants.tsv columns kept; every other column is dropped (age, sex, notes, site,
    # dates can single a person out, and a simulated cohort's columns are its ground truth)
    "participants_keep": ["participant_id"],
    "relabel": False,  # random subject labels; the key is written outside the share
    "copy": [],  # glob patterns (source-relative) of other files to copy anyway
    "keep_flagged": [],  # flags (FLAGS) whose images are shared all the same
    # a defaced image that changed more than this fraction of the brain mask's voxels is flagged
    # brain_changed: the brain is what the data are shared for
    "max_brain_changed_fraction": 0.01,
    "validate": "auto",
    "source_url": None,  # SourceDatasets URL; default: the source folder as a file URI
}


class ShareConfigError(ValueError):
    """A share configuration that cannot run, with the key at fault in the message."""


def _string_list(value, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ShareConfigError(f"{key}: expected a list of strings, got {value!r}")
    return list(value)


def share_options(block: dict | None, method: str | None = None) -> dict:
    """The complete share options: ``block`` (the config's ``share:`` mapping) over :data:`SHARE_DEFAULTS`.

    ``method`` (the command line's ``share_method``) overrides ``share.method``.
    Raises :class:`ShareConfigError` naming the key for an unknown key or a bad value.
    """
    block = dict(block or {})
    unknown = sorted(set(block) - set(SHARE_DEFAULTS))
    if unknown:
        raise ShareConfigError(f"share.{unknown[0]}: unknown key; known keys are {', '.join(SHARE_DEFAULTS)}")
    opts = {**SHARE_DEFAULTS, **block}
    if method:
        opts["method"] = method
    if not opts["method"] or not isinstance(opts["method"], str):
        raise ShareConfigError(
            "share.method: no defacing method chosen to share "
            "(set share.method in the config or pass --config share_method=<method>)"
        )
    if opts["cohorts"] is not None:
        opts["cohorts"] = _string_list(opts["cohorts"], "share.cohorts")
    opts["participants_keep"] = _string_list(opts["participants_keep"], "share.participants_keep")
    if "participant_id" not in opts["participants_keep"]:
        raise ShareConfigError("share.participants_keep: must hold participant_id (BIDS requires the column)")
    opts["copy"] = _string_list(opts["copy"], "share.copy")
    opts["keep_flagged"] = _string_list(opts["keep_flagged"], "share.keep_flagged")
    for flag in opts["keep_flagged"]:
        if flag not in FLAGS:
            raise ShareConfigError(f"share.keep_flagged: unknown flag {flag!r}; flags are {', '.join(FLAGS)}")
    if not isinstance(opts["relabel"], bool):
        raise ShareConfigError(f"share.relabel: expected true or false, got {opts['relabel']!r}")
    limit = opts["max_brain_changed_fraction"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1:
        raise ShareConfigError(f"share.max_brain_changed_fraction: expected a number from 0 to 1, got {limit!r}")
    if not (opts["validate"] == "auto" or isinstance(opts["validate"], bool)):
        raise ShareConfigError(f"share.validate: expected auto, true or false, got {opts['validate']!r}")
    if opts["source_url"] is not None and not isinstance(opts["source_url"], str):
        raise ShareConfigError(f"share.source_url: expected a string, got {opts['source_url']!r}")
    return opts
