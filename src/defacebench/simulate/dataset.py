"""Dataset-level BIDS files of a simulated cohort, and its contact sheet."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__, io

DESCRIPTIONS = {
    "healthy": "ADNI-like cohort: T1w; varying atrophy",
    "ms": "MAGNIMS-like multiple sclerosis cohort: T1w and FLAIR with white-matter lesions",
    "glioma": "PICTURE-like glioblastoma cohort: T1w, T1w with gadolinium, T2w and FLAIR",
}


def write_dataset_files(kind: str, bids_root: Path, truths: list[dict], name: str) -> None:
    """``dataset_description.json`` (raw and truth derivative), ``participants.tsv`` with truth columns, README, contact sheet."""
    bids_root = Path(bids_root)
    generated = [{"Name": "defacebench.simulate", "Version": __version__}]
    io.write_json({"Name": f"defacebench simulated cohort {name} ({kind})", "BIDSVersion": "1.9.0",
                   "DatasetType": "raw", "License": "CC0", "GeneratedBy": generated}, bids_root / "dataset_description.json")
    io.write_json({"Name": f"Ground truth of {name}", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
                   "GeneratedBy": generated}, bids_root / "derivatives" / "truth" / "dataset_description.json")
    table = pd.DataFrame(truths).sort_values("participant_id")
    io.write_text(table.to_csv(sep="\t", index=False, na_rep="n/a"), bids_root / "participants.tsv")
    io.write_text(
        f"Simulated cohort '{name}': {DESCRIPTIONS[kind]}.\n\nHeads from PyDeface's template, brain tissue from "
        "nilearn's MNI152 2009 maps, per-subject pose, deformation, atrophy, pathology, contrast, bias field and "
        "Rician noise. Ground truth (tissue labels, lesion mask, tumour labels, volumes) is in derivatives/truth "
        "and as columns of participants.tsv (volumes in ml; nbv_ml = (gm_ml + wm_ml) x vscaling).\n",
        bids_root / "README",
    )
    contact_sheet(bids_root, [t["participant_id"] for t in truths], bids_root / "contact_sheet.png")


def contact_sheet(bids_root: Path, participants: list[str], out_png: Path) -> None:
    """Mid-sagittal and axial slices of every subject's images, one row per subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for participant in sorted(participants):
        files = sorted((Path(bids_root) / participant / "anat").glob("*.nii.gz"))
        rows.append((participant, files))
    ncols = 2 * max(len(f) for _, f in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.8 * len(rows)), squeeze=False)
    for r, (participant, files) in enumerate(rows):
        for ax in axes[r]:
            ax.axis("off")
        for i, path in enumerate(files):
            img = nib.as_closest_canonical(nib.load(str(path)))
            data = np.asarray(img.dataobj, np.float32)
            zooms = img.header.get_zooms()[:3]
            vmax = np.percentile(data, 99.5)
            sag = data[data.shape[0] // 2].T
            axi = data[:, :, data.shape[2] // 2].T
            axes[r, 2 * i].imshow(sag, origin="lower", cmap="gray", vmax=vmax, aspect=zooms[2] / zooms[1])
            axes[r, 2 * i + 1].imshow(axi, origin="lower", cmap="gray", vmax=vmax, aspect=zooms[1] / zooms[0])
            label = path.name.replace(f"{participant}_", "").replace(".nii.gz", "")
            axes[r, 2 * i].set_title(f"{participant} {label}", fontsize=6)
    fig.tight_layout()
    from ..io import _atomic_target
    import os

    tmp = _atomic_target(Path(out_png))
    try:
        fig.savefig(tmp, dpi=90, format="png")
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
