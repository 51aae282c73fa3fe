"""Spatial agreement of the arms' segmentations: with the simulated truth and with the full image's.

The study's outcomes are volumes (de Sitter et al. 2020, Eur Radiol 30:1062),
and two equal volumes can lie in different places: defacing may move a lesion
segmentation without changing its total. So each analysis also keeps its
segmentation (:func:`segmentation_name`), and the overlap of two segmentations
of the same subject is the Dice similarity coefficient, 2|A n B| / (|A| + |B|)
(Dice 1945, Ecology 26:297), as used to compare white-matter lesion
segmentations by Zijdenbos et al. 1994 (IEEE TMI 13:716).

Regions, one per record outcome (:data:`REGIONS`), on label maps that follow
the simulator's truth (``derivatives/truth``) and FSL FAST's ``_seg`` (1 CSF,
2 GM, 3 WM):

- NBV: brain tissue, GM and WM (labels 2, 3) of the tissue segmentation;
- WMLV: the lesion mask (LST's definition: p > 0.5, small clusters dropped);
- GBV: the tumour core, necrosis + non-enhancing + enhancing (1, 3, 4);
- WTV: the whole tumour, core and oedema (1-4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

if TYPE_CHECKING:  # pandas is imported by the table functions only: an analysis job need not load it
    import pandas as pd

#: Label map file per analysis outcome: ``sub-<s>_variant-<v>_<desc>.nii.gz`` (BIDS derivative suffixes).
SEGMENTATION_DESC = {"NBV": "desc-tissue_dseg", "WMLV": "desc-lesion_mask", "GBV": "desc-tumour_dseg"}
#: The truth file of the simulated cohorts each outcome is compared with (``derivatives/truth``).
TRUTH_DESC = {"NBV": "dseg", "WMLV": "desc-lesion_mask", "GBV": "desc-tumour_dseg", "WTV": "desc-tumour_dseg"}
#: The labels that make each record outcome's region (None: every label above 0).
REGIONS = {"NBV": (2, 3), "WMLV": None, "GBV": (1, 3, 4), "WTV": None}
#: The outcome whose segmentation a record outcome reads (the whole tumour is in the tumour's label map).
SOURCE_OUTCOME = {"NBV": "NBV", "WMLV": "WMLV", "GBV": "GBV", "WTV": "GBV"}


def segmentation_name(outcome: str, subject: str, variant: str) -> str:
    """File name of an analysis' label map, e.g. ``sub-001_variant-none_desc-lesion_mask.nii.gz``."""
    return f"sub-{subject}_variant-{variant}_{SEGMENTATION_DESC[SOURCE_OUTCOME[outcome]]}.nii.gz"


def truth_path(truth_json: str | Path, outcome: str) -> Path:
    """The simulated truth label map beside a subject's ``_truth.json`` for ``outcome``."""
    truth_json = Path(truth_json)
    stem = truth_json.name[: -len("_truth.json")]
    return truth_json.with_name(f"{stem}_{TRUTH_DESC[outcome]}.nii.gz")


def region(labels: np.ndarray, outcome: str) -> np.ndarray:
    """The voxels of ``outcome``'s region in a label map (:data:`REGIONS`)."""
    labels = np.asarray(labels)
    wanted = REGIONS[outcome]
    return labels > 0 if wanted is None else np.isin(labels, wanted)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice similarity coefficient of two boolean masks (1.0 when both are empty; Dice 1945)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def on_one_grid(segmentation: nib.Nifti1Image, reference: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps on ``segmentation``'s RAS-canonical grid, as arrays.

    On another grid (a thick-slice FLAIR against the thin truth) each voxel of
    the segmentation takes the reference label that fills most of it
    (:func:`truth_on_grid`).
    """
    seg = np.asarray(nib.as_closest_canonical(segmentation).dataobj)
    ref = truth_on_grid(reference, segmentation)
    if seg.shape != ref.shape:
        raise ValueError(f"label maps of shapes {seg.shape} and {ref.shape} cannot be compared")
    return seg, ref


def region_dice(segmentation: nib.Nifti1Image, reference: nib.Nifti1Image, outcome: str) -> float:
    """Dice of ``outcome``'s region in two label maps, ``reference`` taken onto ``segmentation``'s grid (:func:`on_one_grid`)."""
    seg, ref = on_one_grid(segmentation, reference)
    return dice(region(seg, outcome), region(ref, outcome))


# --------------------------------------------------------------------------- the cohort's overlap table

#: Columns of the overlap table, with their meaning.
OVERLAP_COLUMNS = {
    "outcome": "record outcome; its region: NBV brain tissue (GM + WM), WMLV lesions, GBV tumour core, WTV whole tumour",
    "method": "defacing method compared with the full image",
    "subject": "subject label",
    "n_complete": "complete cases (as in the agreement table) whose analyses both wrote a label map",
    "dice_vs_full": "Dice of the region on the defaced image against the full image's (1 = same voxels)",
    "dice_vs_full_mean": "mean over subjects of dice_vs_full",
    "dice_vs_full_min": "lowest dice_vs_full over subjects",
    "dice_full_vs_truth": "Dice of the full image's region against the simulated truth (n/a without a truth)",
    "dice_defaced_vs_truth": "Dice of the defaced image's region against the simulated truth",
    "dice_full_vs_truth_mean": "mean over subjects of dice_full_vs_truth",
    "dice_defaced_vs_truth_mean": "mean over subjects of dice_defaced_vs_truth",
}
SUBJECT_COLUMNS = ("outcome", "method", "subject", "dice_vs_full", "dice_full_vs_truth", "dice_defaced_vs_truth")
SUMMARY_COLUMNS = (
    "outcome",
    "method",
    "n_complete",
    "dice_vs_full_mean",
    "dice_vs_full_min",
    "dice_full_vs_truth_mean",
    "dice_defaced_vs_truth_mean",
)


def _details(row) -> dict:
    text = row["details"]
    return json.loads(text) if isinstance(text, str) and text else {}


def _label_map(segmentation_root: Path, row) -> nib.Nifti1Image | None:
    name = _details(row).get("segmentation")
    if not name:
        return None  # the backend gave no label map (e.g. FSL's sienax, or an external command for NBV)
    folder = f"sub-{row['subject']}_variant-{row['variant']}"
    return nib.load(str(Path(segmentation_root) / SOURCE_OUTCOME[row["outcome"]] / folder / name))


def overlap_table(records: pd.DataFrame, segmentation_root: str | Path) -> pd.DataFrame:
    """Per outcome, method and subject: Dice of the defaced image's region against the full image's and the truth's.

    ``records``: one cohort's records (:func:`defacebench.tables.load_records`);
    ``segmentation_root``: the cohort's folder of label maps
    (``<root>/<outcome>/sub-<s>_variant-<v>/``, :func:`segmentation_name`). Subjects
    are the complete cases of the agreement table
    (:func:`defacebench.tables.complete_cases`), so both tables speak of the
    same subjects.
    """
    import pandas as pd

    from .tables import FULL, complete_cases, succeeded

    rows = []
    ok = records[succeeded(records)]
    for outcome in [o for o in REGIONS if o in set(ok["outcome"])]:
        sub = records[records["outcome"] == outcome]
        methods = sorted(v for v in sub["variant"].unique() if v != FULL)
        by_variant = {
            v: ok[(ok["outcome"] == outcome) & (ok["variant"] == v)].set_index("subject") for v in [FULL, *methods]
        }
        for subject in complete_cases(sub, outcome):
            full_row = by_variant[FULL].loc[subject]
            full = _label_map(segmentation_root, {**full_row, "subject": subject})
            if full is None:
                continue
            for method in methods:
                row = by_variant[method].loc[subject]
                defaced = _label_map(segmentation_root, {**row, "subject": subject})
                if defaced is None:
                    continue
                rows.append(
                    {
                        "outcome": outcome,
                        "method": method,
                        "subject": subject,
                        "dice_vs_full": region_dice(defaced, full, outcome),
                        "dice_full_vs_truth": _details(full_row).get("dice_vs_truth", np.nan),
                        "dice_defaced_vs_truth": _details(row).get("dice_vs_truth", np.nan),
                    }
                )
    return pd.DataFrame(rows, columns=list(SUBJECT_COLUMNS)).astype(
        {"dice_vs_full": float, "dice_full_vs_truth": float, "dice_defaced_vs_truth": float}
    )


def overlap_summary(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Mean and lowest Dice against the full image, and mean Dice against the truth, per outcome and method."""
    import pandas as pd

    rows = []
    for (outcome, method), group in per_subject.groupby(["outcome", "method"], sort=False):
        rows.append(
            {
                "outcome": outcome,
                "method": method,
                "n_complete": len(group),
                "dice_vs_full_mean": group["dice_vs_full"].mean(),
                "dice_vs_full_min": group["dice_vs_full"].min(),
                "dice_full_vs_truth_mean": group["dice_full_vs_truth"].mean(),
                "dice_defaced_vs_truth_mean": group["dice_defaced_vs_truth"].mean(),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# --------------------------------------------------------------------------- the cohort's overlap figure

#: The image each outcome's label maps are drawn on, in order of preference (the first on the label map's grid).
BACKGROUND = {"NBV": ("T1w",), "WMLV": ("FLAIR",), "GBV": ("ceT1w", "T1w"), "WTV": ("FLAIR", "T1w")}
#: At most this many subjects per outcome in the figure: those whose segmentations moved most.
FIGURE_SUBJECTS = 6
#: Overlay colours (RGBA): in both label maps, in the full image's only, in the defaced image's only.
BOTH, FULL_ONLY, DEFACED_ONLY = (1.0, 0.85, 0.0, 0.75), (0.0, 0.8, 1.0, 0.9), (1.0, 0.0, 0.8, 0.9)


def _canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    canonical = nib.as_closest_canonical(img)
    return np.asarray(canonical.dataobj), canonical.affine


def _background(paths: dict, outcome: str, label_map: nib.Nifti1Image) -> np.ndarray | None:
    """The first image of :data:`BACKGROUND` on the label map's grid, canonical, clipped to its 99.5th percentile."""
    target = nib.as_closest_canonical(label_map)
    for modality in BACKGROUND[outcome]:
        if modality in paths and Path(paths[modality]).exists():
            data, affine = _canonical(nib.load(str(paths[modality])))
            if data.shape[:3] == target.shape[:3] and np.allclose(affine, target.affine, atol=1e-3):
                data = data.astype(np.float32)
                # a few bright voxels (fat, vessels) would otherwise leave the brain dark
                return np.clip(data, 0, np.percentile(data[data > 0], 99.5) if (data > 0).any() else 1.0)
    return None


def _overlay(full: np.ndarray, defaced: np.ndarray | None) -> np.ndarray:
    rgba = np.zeros(full.shape + (4,), np.float32)
    if defaced is None:
        rgba[full] = BOTH
        return rgba
    rgba[full & defaced] = BOTH
    rgba[full & ~defaced] = FULL_ONLY
    rgba[defaced & ~full] = DEFACED_ONLY
    return rgba


def plot_overlap(
    per_subject: pd.DataFrame,
    records: pd.DataFrame,
    segmentation_root: str | Path,
    images: dict,
    out_png: str | Path,
    cohort: str,
) -> Path:
    """One axial slice per outcome and subject: the full image's region and each method's against it.

    ``per_subject``: :func:`overlap_table`; ``images``: subject -> modality -> path
    of the full images (the background, :data:`BACKGROUND`). Per outcome the
    subjects whose segmentations moved most (lowest Dice against the full image,
    at most :data:`FIGURE_SUBJECTS`); the slice is where the methods' label maps
    differ most from the full image's (else where its region is largest). Yellow:
    in both; cyan: in the full image's only; magenta: in the defaced image's only.
    Uses a bare matplotlib ``Figure`` (Agg canvas), no pyplot state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io import atomic_path
    from .tables import FULL

    rows = []
    for outcome, group in per_subject.groupby("outcome", sort=False):
        worst = group.groupby("subject")["dice_vs_full"].min().sort_values().index[:FIGURE_SUBJECTS]
        rows += [(outcome, subject) for subject in worst]
    methods = sorted(per_subject["method"].unique())
    fig = Figure(figsize=(2.4 * (1 + max(1, len(methods))), 2.5 * max(1, len(rows))))
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(rows)), 1 + max(1, len(methods)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no label maps to compare", ha="center", va="center")
    ok = records[records["status"] == "ok"]
    for r, (outcome, subject) in enumerate(rows):
        mine = ok[(ok["outcome"] == outcome) & (ok["subject"] == subject)].set_index("variant")
        full_img = _label_map(segmentation_root, {**mine.loc[FULL], "variant": FULL, "subject": subject})
        full = region(_canonical(full_img)[0], outcome)
        defaced = {}
        for method in methods:
            if method in mine.index:
                img = _label_map(segmentation_root, {**mine.loc[method], "variant": method, "subject": subject})
                if img is not None:
                    defaced[method] = region(_canonical(img)[0], outcome)
        differ = sum((m ^ full).sum(axis=(0, 1)) for m in defaced.values()) if defaced else 0
        z = int(np.argmax(differ)) if np.any(differ) else int(np.argmax(full.sum(axis=(0, 1))))
        background = _background(images.get(subject, {}), outcome, full_img)
        scores = per_subject[(per_subject["outcome"] == outcome) & (per_subject["subject"] == subject)]
        for c, method in enumerate([None, *methods]):
            ax = axes[r, c]
            if background is not None:
                ax.imshow(np.rot90(background[:, :, z]), cmap="gray", interpolation="nearest")
            else:
                ax.imshow(np.rot90(np.zeros(full.shape[:2])), cmap="gray", vmin=0, vmax=1)
            if method is None:
                ax.imshow(np.rot90(_overlay(full[:, :, z], None)), interpolation="nearest")
                ax.set_title(f"{outcome} sub-{subject}: full (z={z})", fontsize=8)
            elif method in defaced:
                ax.imshow(np.rot90(_overlay(full[:, :, z], defaced[method][:, :, z])), interpolation="nearest")
                score = scores.loc[scores["method"] == method, "dice_vs_full"]
                ax.set_title(f"{method}: Dice {float(score.iloc[0]):.4f}" if len(score) else method, fontsize=8)
            else:
                ax.set_title(f"{method}: no label map", fontsize=8)
    fig.suptitle(
        f"Segmentations of defaced against full images, cohort {cohort}\n(yellow both, "
        f"cyan full only, magenta defaced only; the subjects whose segmentations moved most)",
        fontsize=9,
    )
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return out_png


def truth_on_grid(truth: nib.Nifti1Image, reference: nib.Nifti1Image, max_samples: int = 125) -> np.ndarray:
    """Integer truth labels on ``reference``'s RAS-canonical grid: each voxel takes its majority label.

    On the same grid the labels are returned as they are. On another grid each
    reference voxel is sampled at a regular lattice of points spread over its
    extent (as many per axis as truth voxels fit along that axis, at most
    ``max_samples`` points in all), each point takes the nearest truth label,
    and the voxel takes the label that covers most of it; ties go to the lower
    label (0, background, first). A thick-slice FLAIR voxel averages the thin
    slices it spans (:func:`defacebench.simulate.contrast.thick_slices`), so the
    label it should carry is the one filling most of that slab, not the one at
    its centre, which a single nearest-neighbour sample would give.
    """
    from scipy import ndimage

    t = nib.as_closest_canonical(truth)
    r = nib.as_closest_canonical(reference)
    data = np.asanyarray(t.dataobj)
    data = data.astype(np.int16) if np.issubdtype(data.dtype, np.integer) else np.rint(data).astype(np.int16)
    if t.shape[:3] == r.shape[:3] and np.allclose(t.affine, r.affine, atol=1e-3):
        return data
    vox = np.linalg.inv(t.affine) @ r.affine
    # truth voxels spanned by one reference voxel along each of its axes
    spans = np.linalg.norm(vox[:3, :3], axis=0)
    per_axis = np.maximum(1, np.ceil(spans - 1e-3)).astype(int)
    while np.prod(per_axis) > max_samples:
        per_axis[np.argmax(per_axis)] -= 1
    offsets = [(np.arange(n) + 0.5) / n - 0.5 for n in per_axis]
    labels = np.unique(data)
    votes = np.zeros((len(labels),) + tuple(r.shape[:3]), np.uint16)
    for dx in offsets[0]:
        for dy in offsets[1]:
            for dz in offsets[2]:
                shift = vox[:3, :3] @ np.array([dx, dy, dz]) + vox[:3, 3]
                sample = ndimage.affine_transform(data, vox[:3, :3], shift, output_shape=r.shape[:3], order=0)
                for k, label in enumerate(labels):
                    votes[k] += sample == label
    return labels[np.argmax(votes, axis=0)].astype(np.int16)
