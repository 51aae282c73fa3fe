"""Contact sheet of a simulated cohort: mid-sagittal and axial slice of every image, one row per subject."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .. import io

#: Column order of a subject's images on the sheet.
ORDER = ("T1w", "ce-gadolinium_T1w", "T2w", "FLAIR")


def _order(path: Path) -> int:
    tail = path.name.split("_", 1)[1].replace(".nii.gz", "")
    return ORDER.index(tail) if tail in ORDER else len(ORDER)


def slices(path: Path):
    """Mid-sagittal and axial (through the head's centre of mass) slices in RAS, with their aspect ratios."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(img.dataobj, np.float32)
    zooms = img.header.get_zooms()[:3]
    # axial slice through the lateral ventricles: 60 mm below the top of the head
    profile = (data > 0.2 * np.percentile(data, 99)).sum((0, 1))
    top = int(np.flatnonzero(profile > 0.05 * profile.max()).max()) if profile.any() else data.shape[2] - 1
    z = int(np.clip(top - round(60.0 / zooms[2]), 0, data.shape[2] - 1))
    sagittal = data[data.shape[0] // 2].T
    axial = data[:, :, z].T
    vmax = float(np.percentile(data[data > 0], 99.5)) if data.any() else 1.0
    return sagittal, axial, zooms[2] / zooms[1], zooms[1] / zooms[0], vmax


def contact_sheet(bids_root: Path, participants: list[str], out_png: Path) -> None:
    """PNG with, per subject (row), a mid-sagittal and an axial slice of each image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for participant in sorted(participants):
        files = sorted((Path(bids_root) / participant / "anat").glob("*.nii.gz"), key=_order)
        rows.append((participant, files))
    ncols = 2 * max([len(f) for _, f in rows] + [1])
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.5 * ncols, 1.7 * len(rows)), squeeze=False, facecolor="black")
    for r, (participant, files) in enumerate(rows):
        for ax in axes[r]:
            ax.axis("off")
        for i, path in enumerate(files):
            sagittal, axial, sag_aspect, ax_aspect, vmax = slices(path)
            axes[r, 2 * i].imshow(sagittal, origin="lower", cmap="gray", vmin=0, vmax=vmax, aspect=sag_aspect)
            axes[r, 2 * i + 1].imshow(axial, origin="lower", cmap="gray", vmin=0, vmax=vmax, aspect=ax_aspect)
            label = path.name.replace(f"{participant}_", "").replace(".nii.gz", "")
            axes[r, 2 * i].set_title(f"{participant} {label}", fontsize=6, color="white")
    fig.tight_layout()
    out_png = Path(out_png)
    try:
        with io.atomic_path(out_png) as tmp:
            # no timestamp in the PNG metadata: the same cohort gives the same file
            fig.savefig(tmp, dpi=90, format="png", facecolor="black", metadata={"Software": None})
    finally:
        plt.close(fig)
