"""Cohorts as BIDS datasets: modality keys and file discovery (pybids)."""

from __future__ import annotations

#: Modality key -> BIDS entities that select it. ``ceT1w`` is BIDS ``ce-gadolinium_T1w``.
MODALITIES = {
    "T1w": {"suffix": "T1w", "ceagent": None},
    "ceT1w": {"suffix": "T1w", "ceagent": "gadolinium"},
    "T2w": {"suffix": "T2w", "ceagent": None},
    "FLAIR": {"suffix": "FLAIR", "ceagent": None},
}

#: BIDS file name tail (after ``sub-<label>_``) of each modality.
MODALITY_FILENAME = {
    "T1w": "T1w.nii.gz",
    "ceT1w": "ce-gadolinium_T1w.nii.gz",
    "T2w": "T2w.nii.gz",
    "FLAIR": "FLAIR.nii.gz",
}
