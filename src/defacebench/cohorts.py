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


# --------------------------------------------------------------------------- reference labels (issue 24)
# What the study plan needs of defacebench.reference, here so that planning imports neither numpy nor nibabel.

#: Tumour label conventions: what each label means, and the labels of the core and the whole tumour.
LABEL_CONVENTIONS = {
    "brats2017": {
        "description": "BraTS 2017-2020: 1 necrotic and non-enhancing core, 2 oedema, 4 enhancing tumour",
        "core": (1, 4),
        "whole": (1, 2, 4),
    },
    "brats2023": {
        "description": "BraTS 2023 (BraTS-GLI): 1 necrotic core, 2 oedema (surrounding FLAIR hyperintensity), "
        "3 enhancing tumour",
        "core": (1, 3),
        "whole": (1, 2, 3),
    },
    "defacebench": {
        "description": "defacebench's tumour arm and simulator (BraTS 2012-2016): 1 necrosis, 2 oedema, "
        "3 non-enhancing tumour, 4 enhancing tumour",
        "core": (1, 3, 4),
        "whole": (1, 2, 3, 4),
    },
}

#: Which tumour region each tumour outcome measures.
TUMOUR_REGION = {"GBV": "core", "WTV": "whole"}

#: The reference file each outcome is compared with by default: BIDS ``desc`` and suffix.
DEFAULT_REFERENCE = {
    "NBV": {"desc": "brain", "suffix": "mask"},
    "WMLV": {"desc": "lesion", "suffix": "mask"},
    "GBV": {"desc": "tumour", "suffix": "dseg"},
    "WTV": {"desc": "tumour", "suffix": "dseg"},
}


def convention(labels: str | dict) -> dict:
    """A label convention: a name of :data:`LABEL_CONVENTIONS` or a mapping with ``core`` and ``whole`` label lists."""
    if isinstance(labels, str):
        if labels not in LABEL_CONVENTIONS:
            raise ValueError(f"unknown tumour label convention {labels!r}; known: {', '.join(LABEL_CONVENTIONS)}")
        return LABEL_CONVENTIONS[labels]
    missing = [k for k in ("core", "whole") if k not in labels]
    if missing:
        raise ValueError(f"a tumour label map needs {' and '.join(missing)} (lists of labels)")
    return {
        "description": labels.get("description", "label map from the config"),
        "core": tuple(int(v) for v in labels["core"]),
        "whole": tuple(int(v) for v in labels["whole"]),
    }


def default_derivatives(bids_root: str | Path, name: str) -> Path | None:
    """``<bids_root>/derivatives/<name>`` when it is a dataset (has a dataset_description.json), else None."""
    candidate = Path(bids_root) / "derivatives" / name
    return candidate if (candidate / "dataset_description.json").exists() else None


def plan_reference(block: dict, bids_root: str | Path, outcomes, workdir: str | Path = ".") -> tuple[dict, list[str]]:
    """A BIDS cohort's ``reference`` config block resolved for its analyses, and the plan's warnings.

    ``block``: ``derivatives`` (a path, relative to ``workdir``; it must be a
    derivatives dataset) or ``name`` (its folder under
    ``<bids_root>/derivatives/``: used when present, else every record says
    there is none), and ``outcomes``: per outcome, the reference file's BIDS
    entities and, for tumour outcomes, ``labels`` (default: every outcome of
    the cohort, with :data:`DEFAULT_REFERENCE`). Returns ``({"derivatives":
    path or None, "outcomes": {outcome: spec}}, warnings)``; raises
    ``ValueError`` naming the key for a block that cannot work.
    """
    if "derivatives" in block and "name" in block:
        raise ValueError(
            "reference: give derivatives (a path) or name (a folder under <bids_root>/derivatives), not both"
        )
    warnings = []
    if "derivatives" in block:
        derivatives = (Path(workdir) / block["derivatives"]).resolve()
        if not (derivatives / "dataset_description.json").exists():
            raise ValueError(
                f"reference.derivatives: {derivatives} is not a BIDS dataset (no dataset_description.json)"
            )
    elif "name" in block:
        derivatives = default_derivatives(bids_root, block["name"])
        if derivatives is None:
            warnings.append(
                f"reference: no derivatives dataset {Path(bids_root) / 'derivatives' / block['name']}; "
                "every record will say there is no reference"
            )
    else:
        raise ValueError("reference: give derivatives (a path) or name (a folder under <bids_root>/derivatives)")
    specs = block.get("outcomes") or {outcome: {} for outcome in outcomes}
    unknown = [outcome for outcome in specs if outcome not in outcomes]
    if unknown:
        raise ValueError(f"reference.outcomes: {', '.join(unknown)} not among the cohort's outcomes {list(outcomes)}")
    for outcome, spec in specs.items():
        if outcome in ("GBV", "WTV"):
            try:
                convention((spec or {}).get("labels", "brats2017"))
            except ValueError as exc:
                raise ValueError(f"reference.outcomes.{outcome}.labels: {exc}") from exc
    resolved = {outcome: dict(spec or {}) for outcome, spec in specs.items()}
    return {"derivatives": str(derivatives) if derivatives else None, "outcomes": resolved}, warnings


def analysis_reference(plan: dict | None, outcome: str) -> dict | None:
    """What one analysis of ``outcome`` is given about its reference: ``derivatives`` and ``spec``, or None.

    None when the cohort has no reference block, or its block does not list
    the outcome (then the records carry no reference fields at all).
    """
    if not plan or outcome not in plan.get("outcomes", {}):
        return None
    return {"derivatives": plan.get("derivatives"), "spec": dict(plan["outcomes"][outcome])}


def session_of(path: str | Path) -> str | None:
    """The BIDS session label in an image's file name (``sub-01_ses-2_T1w.nii.gz`` -> ``2``), or None."""
    for part in Path(path).name.split("_"):
        if part.startswith("ses-"):
            return part[4:]
    return None
