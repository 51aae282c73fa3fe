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


#: How ``select`` picks one image among several of one modality: the lowest or the highest entity value.
SELECT_RULES = ("first", "last")


def discover_bids_images(
    bids_root: str | Path, modalities, filters: dict | None = None, select: dict | None = None
) -> dict[str, dict[str, Path]]:
    """Index a BIDS dataset with pybids: ``{subject: {modality: path}}``.

    ``filters`` are pybids entity filters (e.g. ``{"subject": ["01", "02"], "session": "1"}``);
    a list may hold ``None`` to keep the images that lack the entity
    (``{"run": [1, None]}``: run 1, or no run at all). ``select`` chooses among
    several images of one modality of one subject, per entity, in the order
    given: ``{"run": "last"}`` keeps the image with the highest run (``first``:
    the lowest; an image without the entity counts as lower than any with it).
    It only acts where a subject has more than one image, so subjects with a
    single image (with or without the entity) keep it. A subject still left
    with several images of one modality raises ``ValueError`` naming every
    such subject and its files, the entities that tell them apart, and both
    remedies. Subjects lacking a modality are left out of that modality's
    dict, so the analysis records them as failed for a missing input.
    The dataset is opened read-only (no database is written).
    """
    from bids import BIDSLayout

    root = Path(bids_root)
    if not (root / "dataset_description.json").exists():
        raise FileNotFoundError(f"{root} is not a BIDS dataset (no dataset_description.json)")
    select = dict(select or {})
    for entity, rule in select.items():
        if rule not in SELECT_RULES:
            raise ValueError(f"select.{entity}: {rule!r} is not allowed; allowed: {', '.join(SELECT_RULES)}")
    layout = BIDSLayout(str(root), validate=False, derivatives=False)
    filters = dict(filters or {})
    candidates: dict[str, dict[str, list]] = {}  # subject -> modality -> [(path, entities)]
    for subject in layout.get_subjects(**{k: v for k, v in filters.items() if k == "subject"}):
        candidates.setdefault(subject, {})
    for modality in modalities:
        entities = MODALITIES[modality]
        query = {"datatype": "anat", "suffix": entities["suffix"], "extension": [".nii", ".nii.gz"], **filters}
        for path in layout.get(return_type="filename", **query):
            ents = layout.parse_file_entities(path)
            if ents.get("ceagent") != entities["ceagent"]:
                continue
            candidates.setdefault(ents["subject"], {}).setdefault(modality, []).append((Path(path), ents))
    found: dict[str, dict[str, Path]] = {}
    ambiguous = []
    for subject in sorted(candidates):
        found[subject] = {}
        for modality, images in candidates[subject].items():
            images = _select(sorted(images, key=lambda item: str(item[0])), select)
            if len(images) > 1:
                ambiguous.append((subject, modality, images))
            else:
                found[subject][modality] = images[0][0]
    if ambiguous:
        raise ValueError(_ambiguity_message(ambiguous))
    return found


def _entity_order(value) -> tuple:
    """Sort key of an entity value: absent first, then numbers (runs) by value, then text."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, int):
        return (1, int(value), "")
    return (2, 0, str(value))


def _select(images: list, select: dict) -> list:
    """The images that ``select``'s rules keep, applied entity by entity while more than one is left."""
    for entity, rule in select.items():
        if len(images) < 2:
            break
        keys = [_entity_order(ents.get(entity)) for _, ents in images]
        chosen = min(keys) if rule == "first" else max(keys)
        images = [image for image, key in zip(images, keys) if key == chosen]
    return images


def _ambiguity_message(ambiguous: list, shown: int = 5) -> str:
    """Why the plan stops: the subjects with several images of one modality, and how to choose."""
    lines = []
    differing: list[str] = []
    for subject, modality, images in ambiguous:
        names = ", ".join(path.name for path, _ in images)
        lines.append(f"sub-{subject} has {len(images)} {modality} images ({names})")
        keys = sorted({key for _, ents in images for key in ents} - {"subject", "suffix", "extension", "datatype"})
        for key in keys:
            if len({str(ents.get(key)) for _, ents in images}) > 1 and key not in differing:
                differing.append(key)
    more = f"; and {len(ambiguous) - shown} more" if len(ambiguous) > shown else ""
    entity = differing[0] if differing else "run"
    return (
        f"{len(ambiguous)} subject image(s) are ambiguous: {'; '.join(lines[:shown])}{more}. "
        f"They differ in: {', '.join(differing) or 'no BIDS entity'}. Choose one per subject in the cohort entry "
        f"with select: {{{entity}: last}} (or first), which leaves subjects with one image alone, or with a filter "
        f"that keeps images without the entity, e.g. filters: {{{entity}: [1, null]}} "
        f"(a filter {{{entity}: 1}} alone drops every image that has no {entity})"
    )
