"""Cohorts as BIDS datasets: modality keys, outcome requirements and file discovery.

Real cohorts are indexed with pybids (Yarkoni et al. 2019, JOSS 4:1294), never by
hand-written globbing; simulated cohorts follow the same BIDS names, so a
simulated and a real cohort look alike to the rest of the workflow.
"""

from __future__ import annotations

from pathlib import Path

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

#: Images each outcome needs (de Sitter et al. 2020: SIENAX on T1w, LST-lpa on FLAIR,
#: BraTumIA on T1w, T1w-Gd, T2w and FLAIR).
OUTCOME_MODALITIES = {
    "NBV": ("T1w",),
    "WMLV": ("FLAIR", "T1w"),
    "GBV": ("T1w", "ceT1w", "T2w", "FLAIR"),
}

#: Modalities that a simulated cohort of each kind carries.
SIMULATED_MODALITIES = {
    "healthy": ("T1w",),
    "ms": ("T1w", "FLAIR"),
    "glioma": ("T1w", "ceT1w", "T2w", "FLAIR"),
}

#: Records each outcome's analysis writes (GBV also reports the whole tumour, with oedema).
OUTCOME_RECORDS = {"NBV": ("NBV",), "WMLV": ("WMLV",), "GBV": ("GBV", "WTV")}

#: Key of the simulated ground truth (truth JSON) for each recorded outcome.
TRUTH_KEYS = {"NBV": "nbv_ml", "WMLV": "lesion_ml", "GBV": "tumour_core_ml", "WTV": "whole_tumour_ml"}


def simulated_subjects(n_subjects: int) -> list[str]:
    """Subject labels of a simulated cohort: ``001``, ``002``, ..."""
    width = max(3, len(str(n_subjects)))
    return [f"{i:0{width}d}" for i in range(1, n_subjects + 1)]


def simulated_image_path(bids_root: str | Path, subject: str, modality: str) -> Path:
    """Where the simulator writes ``modality`` of ``subject`` (BIDS layout)."""
    return Path(bids_root) / f"sub-{subject}" / "anat" / f"sub-{subject}_{MODALITY_FILENAME[modality]}"


def discover_bids_images(bids_root: str | Path, modalities, filters: dict | None = None) -> dict[str, dict[str, Path]]:
    """Index a BIDS dataset with pybids: ``{subject: {modality: path}}``.

    ``filters`` are pybids entity filters (e.g. ``{"subject": ["01", "02"], "session": "1"}``).
    A subject must have exactly one image per modality; one with several
    (runs, sessions) needs a filter to choose, and raises ``ValueError`` naming
    the files. Subjects lacking a modality are left out of that modality's
    dict, so the analysis records them as failed for a missing input.
    The dataset is opened read-only (no database is written).
    """
    from bids import BIDSLayout

    root = Path(bids_root)
    if not (root / "dataset_description.json").exists():
        raise FileNotFoundError(f"{root} is not a BIDS dataset (no dataset_description.json)")
    layout = BIDSLayout(str(root), validate=False, derivatives=False)
    filters = dict(filters or {})
    found: dict[str, dict[str, Path]] = {}
    for subject in layout.get_subjects(**{k: v for k, v in filters.items() if k == "subject"}):
        found.setdefault(subject, {})
    for modality in modalities:
        entities = MODALITIES[modality]
        query = {"datatype": "anat", "suffix": entities["suffix"], "extension": [".nii", ".nii.gz"], **filters}
        files = layout.get(return_type="filename", **query)
        for path in files:
            ents = layout.parse_file_entities(path)
            if ents.get("ceagent") != entities["ceagent"]:
                continue
            subject = ents["subject"]
            previous = found.setdefault(subject, {}).get(modality)
            if previous is not None:
                raise ValueError(
                    f"sub-{subject} has more than one {modality} image ({previous}, {path}); "
                    "add a filter (e.g. run or session) to the cohort entry to choose one"
                )
            found[subject][modality] = Path(path)
    return {s: found[s] for s in sorted(found)}
