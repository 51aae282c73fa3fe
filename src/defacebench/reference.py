"""Accuracy against the user's own reference labels: a BIDS derivatives dataset of lesion masks or tumour labels.

On simulated cohorts every record carries its Dice against the truth; on real
data researchers often have manual lesion masks or tumour labels. With them,
"does defacing change the result?" gains its second half: "does it make the
result less right?" (issue 24). This module

- finds a subject's reference label map for an outcome in a BIDS derivatives
  dataset with pybids (:func:`find_reference`; by default
  ``sub-<s>[_ses-<x>]_desc-lesion_mask`` for WMLV, ``desc-tumour_dseg`` for GBV
  and WTV, ``desc-brain_mask`` for NBV, :data:`DEFAULT_REFERENCE`);
- reads the outcome's region from it under a tumour label convention
  (:data:`LABEL_CONVENTIONS`: BraTS 2017-2020, BraTS 2023, or this package's
  own, or a label map given in the config);
- compares an analysis' label map with it on the **reference's grid** (the
  label map resampled by nearest neighbour through world coordinates): Dice
  (Dice 1945), volume difference (analysis minus reference, ml) and HD95, the
  95th percentile of the symmetric surface distances in mm (Huttenlocher et al.
  1993; the BraTS evaluation's robust Hausdorff distance, Bakas et al. 2018,
  arXiv:1811.02629, computed as medpy's ``hd95`` pools both directions).

A missing reference, an unreadable one, or a region empty in one of the two
gives a record entry that says so, never a made-up value.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from .cohorts import (  # noqa: F401 (the plan's part lives in cohorts, light to import; re-exported)
    DEFAULT_REFERENCE,
    LABEL_CONVENTIONS,
    TUMOUR_REGION,
    analysis_reference,
    convention,
    default_derivatives,
    plan_reference,
    session_of,
)
from .integrity import resample_mask
from .overlap import REGIONS as ARM_REGIONS
from .overlap import dice


def reference_region(labels: np.ndarray, outcome: str, labels_convention: str | dict = "brats2017") -> np.ndarray:
    """The voxels of ``outcome``'s region in a reference label map.

    Tumour outcomes take the convention's core (GBV) or whole tumour (WTV);
    a lesion or brain mask is every voxel above 0.
    """
    labels = np.asarray(labels)
    if outcome in TUMOUR_REGION:
        return np.isin(labels, convention(labels_convention)[TUMOUR_REGION[outcome]])
    return labels > 0


def analysis_region(labels: np.ndarray, outcome: str) -> np.ndarray:
    """The voxels of ``outcome``'s region in the arm's own label map (:data:`defacebench.overlap.REGIONS`)."""
    labels = np.asarray(labels)
    wanted = ARM_REGIONS[outcome]
    return labels > 0 if wanted is None else np.isin(labels, wanted)


def find_reference(
    derivatives: str | Path, subject: str, outcome: str, spec: dict | None = None, session: str | None = None
) -> tuple[Path | None, str]:
    """The reference label map of ``subject`` for ``outcome`` in a BIDS derivatives dataset, found with pybids.

    ``spec`` gives the BIDS entities to match (default
    :data:`DEFAULT_REFERENCE`: ``desc`` and ``suffix``; any other pybids
    entity may be added, e.g. ``space``). Returns ``(path, "")``, or
    ``(None, why)`` when the dataset or the file is missing or the match is
    ambiguous.
    """
    derivatives = Path(derivatives)
    if not (derivatives / "dataset_description.json").exists():
        return None, f"no reference dataset at {derivatives} (no dataset_description.json)"
    query = {**DEFAULT_REFERENCE.get(outcome, {}), **(spec or {})}
    query = {k: v for k, v in query.items() if k != "labels"}
    if "suffix" not in query:
        return None, f"no reference file named for {outcome}"
    layout = _layout(str(derivatives))
    filters = {"subject": subject, "extension": [".nii", ".nii.gz"], **query}
    if session is not None:
        filters["session"] = session
    found = sorted(layout.get(return_type="filename", **filters))
    wanted = "_".join(f"{k}-{v}" for k, v in query.items() if k != "suffix") + f"_{query['suffix']}"
    if not found:
        return None, f"no reference for sub-{subject} ({wanted}) in {derivatives}"
    if len(found) > 1:
        names = ", ".join(Path(p).name for p in found)
        return None, f"{len(found)} references match sub-{subject} ({wanted}): {names}; name one entity more"
    return Path(found[0]), ""


_LAYOUTS: dict[str, object] = {}


def _layout(root: str):
    """One pybids index per derivatives dataset and process (opened read-only, not validated)."""
    from bids import BIDSLayout

    if root not in _LAYOUTS:
        _LAYOUTS[root] = BIDSLayout(root, validate=False, is_derivative=True)
    return _LAYOUTS[root]


def surface_distances(a: np.ndarray, b: np.ndarray, zooms) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b`` and back, pooled.

    A mask's surface is its voxels with a neighbour (6-connectivity) outside
    it; each distance is an exact Euclidean distance transform of the other
    surface's complement (as medpy's ``__surface_distances``).
    """
    zooms = np.asarray(zooms, float)
    edge = ndimage.generate_binary_structure(3, 1)
    surf_a = a & ~ndimage.binary_erosion(a, edge)
    surf_b = b & ~ndimage.binary_erosion(b, edge)
    to_b = ndimage.distance_transform_edt(~surf_b, sampling=zooms)[surf_a]
    to_a = ndimage.distance_transform_edt(~surf_a, sampling=zooms)[surf_b]
    return np.concatenate([to_b, to_a])


def hd95(a: np.ndarray, b: np.ndarray, zooms) -> float:
    """The 95th percentile of the symmetric surface distances (mm); 0 when both masks are empty, NaN when one is."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("nan")
    box = _bounding_box(a | b, margin=2)  # the distances need only the two masks' common box
    return float(np.percentile(surface_distances(a[box], b[box], zooms), 95))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(
        slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n)) for i, n in zip(idx, mask.shape)
    )


def on_reference_grid(segmentation: nib.Nifti1Image, region: np.ndarray, reference: nib.Nifti1Image) -> np.ndarray:
    """A region of ``segmentation``'s grid brought onto ``reference``'s grid (nearest neighbour, world coordinates)."""
    return resample_mask(np.asarray(region, bool), segmentation, reference)


def compare(
    segmentation: nib.Nifti1Image,
    reference: nib.Nifti1Image,
    outcome: str,
    labels_convention: str | dict = "brats2017",
) -> dict:
    """Dice, volume difference and HD95 of ``outcome``'s region in an analysis' label map against the reference.

    Both regions are measured on the reference's grid: the analysis' region is
    resampled onto it by nearest neighbour (:func:`on_reference_grid`). Returns
    ``dice_vs_reference``, ``volume_ml``, ``reference_volume_ml``,
    ``volume_difference_ml`` (analysis minus reference), ``hd95_mm`` (NaN, with
    ``reference_note``, when one region is empty).
    """
    mine = analysis_region(np.asanyarray(segmentation.dataobj), outcome)
    mine = on_reference_grid(segmentation, mine, reference)
    theirs = reference_region(np.asanyarray(reference.dataobj).reshape(reference.shape[:3]), outcome, labels_convention)
    zooms = np.asarray(reference.header.get_zooms()[:3], float)
    voxel_ml = float(np.prod(zooms)) / 1000
    out = {
        "dice_vs_reference": dice(mine, theirs),
        "volume_ml": float(mine.sum()) * voxel_ml,
        "reference_volume_ml": float(theirs.sum()) * voxel_ml,
        "hd95_mm": hd95(mine, theirs, zooms),
    }
    out["volume_difference_ml"] = out["volume_ml"] - out["reference_volume_ml"]
    if np.isnan(out["hd95_mm"]):
        empty = "the analysis' region" if not mine.any() else "the reference's region"
        out["reference_note"] = f"{empty} is empty on the reference's grid: no surface distance"
    return out


def reference_entry(
    segmentation: nib.Nifti1Image | None,
    outcome: str,
    subject: str,
    derivatives: str | Path | None,
    spec: dict | None = None,
    session: str | None = None,
) -> dict:
    """What a record carries about the reference: the comparison, or why there is none.

    ``spec``: the outcome's reference settings (BIDS entities and, for tumour
    outcomes, ``labels``: a convention name or a label map; default
    ``brats2017``). Returns ``reference`` (the file's path, or None),
    ``reference_labels`` (tumour outcomes) and the :func:`compare` figures, or
    ``reference_missing`` with the reason.
    """
    spec = dict(spec or {})
    labels = spec.get("labels", "brats2017")
    entry: dict = {"reference": None}
    if outcome in TUMOUR_REGION:
        try:
            entry["reference_labels"] = convention(labels)["description"]
        except ValueError as exc:
            return {**entry, "reference_missing": str(exc)}
    if derivatives is None:
        return {**entry, "reference_missing": "no reference dataset configured or found"}
    path, why = find_reference(derivatives, subject, outcome, spec, session)
    if path is None:
        return {**entry, "reference_missing": why}
    entry["reference"] = str(path)
    if segmentation is None:
        return {**entry, "reference_missing": "the analysis wrote no label map to compare"}
    try:
        reference = nib.load(str(path))
        return {**entry, **compare(segmentation, reference, outcome, labels)}
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        return {**entry, "reference_missing": f"reference {path.name} unreadable: {exc}"}


# --------------------------------------------------------------------------- the accuracy table

#: Columns of ``<cohort>_accuracy.tsv``, with their meaning.
ACCURACY_COLUMNS = {
    "outcome": "NBV brain; WMLV white-matter lesions; GBV tumour core; WTV whole tumour incl. oedema",
    "method": "defacing method; none = the full image",
    "backend": "analysis backend(s) that produced the label maps",
    "reference_labels": "how the reference's tumour labels were read (tumour outcomes)",
    "n": "analyses compared with a reference (succeeded, with a label map and a reference file)",
    "n_no_reference": "analyses that succeeded but had no reference to compare with (reasons in the records, "
    "reference_missing)",
    "dice_mean": "mean Dice of the analysis' region against the reference's, on the reference's grid (1 = identical)",
    "dice_min": "lowest Dice",
    "dice_diff_vs_full_mean": "mean over subjects of Dice on this variant minus Dice on the full image "
    "(negative: defacing made the result less right; n/a for the full image)",
    "volume_difference_ml_mean": "mean of the analysis' volume minus the reference's, ml, on the reference's grid",
    "abs_volume_difference_ml_mean": "mean absolute volume difference, ml",
    "hd95_mm_mean": "mean HD95 (95th percentile of the symmetric surface distances, mm) over the analyses where "
    "both regions are non-empty",
    "n_hd95": "analyses with an HD95 (both regions non-empty)",
}


def _reference_rows(records) -> pd.DataFrame:
    """One row per successful analysis that a reference was sought for: the record's reference fields."""
    rows = []
    for record in records.itertuples():
        details = record.details if isinstance(record.details, dict) else json.loads(record.details or "{}")
        if record.status != "ok" or ("dice_vs_reference" not in details and "reference_missing" not in details):
            continue
        rows.append(
            {
                "outcome": record.outcome,
                "method": record.variant,
                "subject": record.subject,
                "backend": record.backend,
                "reference_labels": details.get("reference_labels", ""),
                "dice": details.get("dice_vs_reference", np.nan),
                "volume_difference_ml": details.get("volume_difference_ml", np.nan),
                "hd95_mm": details.get("hd95_mm", np.nan),
            }
        )
    columns = ["outcome", "method", "subject", "backend", "reference_labels", "dice", "volume_difference_ml", "hd95_mm"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("dice", "volume_difference_ml", "hd95_mm"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def accuracy_table(records) -> pd.DataFrame:
    """Accuracy against the reference per outcome and method (``none``, the full image, first).

    ``records``: the long records table (:func:`defacebench.tables.load_records`;
    ``details`` as JSON strings or dicts). Only successful analyses count; a
    failed one has no label map to compare (the failure table counts it).
    """
    from .tables import FULL, OUTCOME_ORDER

    rows = _reference_rows(records)
    out = []
    outcomes = [o for o in OUTCOME_ORDER if o in set(rows["outcome"])] + sorted(
        set(rows["outcome"]) - set(OUTCOME_ORDER)
    )
    for outcome in outcomes:
        of_outcome = rows[rows["outcome"] == outcome]
        full = of_outcome[of_outcome["method"] == FULL].set_index("subject")["dice"]
        methods = sorted(set(of_outcome["method"]) - {FULL})
        for method in ([FULL] if FULL in set(of_outcome["method"]) else []) + methods:
            group = of_outcome[of_outcome["method"] == method]
            compared = group[group["dice"].notna()]
            hd = compared["hd95_mm"].dropna()
            paired = compared.set_index("subject")["dice"].sub(full).dropna() if method != FULL else pd.Series([])
            out.append(
                {
                    "outcome": outcome,
                    "method": method,
                    "backend": "; ".join(sorted({str(b) for b in group["backend"].dropna() if str(b)})),
                    "reference_labels": "; ".join(sorted({str(b) for b in group["reference_labels"] if str(b)})),
                    "n": len(compared),
                    "n_no_reference": int(group["dice"].isna().sum()),
                    "dice_mean": compared["dice"].mean() if len(compared) else np.nan,
                    "dice_min": compared["dice"].min() if len(compared) else np.nan,
                    "dice_diff_vs_full_mean": paired.mean() if len(paired) else np.nan,
                    "volume_difference_ml_mean": compared["volume_difference_ml"].mean() if len(compared) else np.nan,
                    "abs_volume_difference_ml_mean": compared["volume_difference_ml"].abs().mean()
                    if len(compared)
                    else np.nan,
                    "hd95_mm_mean": hd.mean() if len(hd) else np.nan,
                    "n_hd95": len(hd),
                }
            )
    return pd.DataFrame(out, columns=list(ACCURACY_COLUMNS))


def accuracy_per_subject(records) -> pd.DataFrame:
    """The accuracy table's rows before averaging: one per outcome, method and subject."""
    from .tables import FULL

    rows = _reference_rows(records).drop(columns=["backend", "reference_labels"])
    order = {FULL: ""}
    return rows.sort_values(["outcome", "method", "subject"], key=lambda s: s.map(lambda v: order.get(v, v)))
