"""Which part of the face QuickShear leaves, on the real faces and a few simulated heads.

Usage: python bench/diag_quickshear_coverage.py [--simulated N] [--work DIR]

The face region (PyDeface's face mask registered into the subject, restricted to tissue) is
split into thirds along the head's inferior-superior axis (canonical RAS voxel axis 2):
upper (brow and eyes), middle (nose), lower (mouth and chin). For each image the share of each
third that QuickShear changed is printed, beside the whole region's share and the brain voxels
changed. QuickShear's cut is the line through the first segment of the lower convex hull of the
brain's sagittal profile, shifted by its buffer (Schimke & Hale 2011): everything below it goes,
the rest is untouched, so whatever survives sits above that line.
"""

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from defacebench import io
from defacebench.brain import extract_brain
from defacebench.deface import deface_image
from defacebench.deface.common import face_region_mask, face_weights
from defacebench.analysis.pathology_training import simulate_cohort, subject_images
from defacebench.integrity import changed, head_mask, integrity

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-bids"


def thirds_changed(img, defaced, face) -> dict:
    """Changed share of the face region in each inferior-superior third (canonical grid)."""

    def canonical(data):
        return np.asarray(io.to_canonical(nib.Nifti1Image(np.asarray(data), img.affine)).dataobj)

    full = canonical(img.dataobj)
    diff = changed(full, canonical(defaced.dataobj))
    # the same face region as the integrity record: the registered face mask, where the full image holds tissue
    region = (canonical(face.astype(np.uint8)) > 0) & head_mask(full)
    z = np.broadcast_to(np.arange(region.shape[2]), region.shape)
    low, high = np.percentile(z[region], [100 / 3, 200 / 3])
    parts = {"lower": region & (z < low), "middle": region & (z >= low) & (z < high), "upper": region & (z >= high)}
    return {name: float(diff[part].mean()) if part.any() else float("nan") for name, part in parts.items()}


def images(n_simulated: int, work: Path) -> dict:
    found = {}
    for sub in ("otsu", "IXI012", "IXI013", "xa30"):
        path = REAL / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        if path.exists():
            found[f"real sub-{sub}"] = io.load_image(path)
    for i in range(n_simulated):
        kind = ("healthy", "ms", "glioma")[i % 3]
        (truth,) = simulate_cohort(kind, 1, 4000 + i, work, prefix="qs")
        found[f"simulated {kind} sub-{truth['subject']}"] = subject_images(truth["bids_root"], truth["subject"], kind)[
            "T1w"
        ]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulated", type=int, default=3)
    parser.add_argument("--work", default="/tmp/qsdiag")
    args = parser.parse_args()
    for name, img in images(args.simulated, Path(args.work)).items():
        brain = extract_brain(img)
        weights, _ = face_weights(img)
        face = face_region_mask(weights)
        defaced, _ = deface_image("quickshear", img, brain_mask=brain, face_region=weights)
        record = integrity(img.dataobj, defaced.dataobj, brain, face)
        shares = thirds_changed(img, defaced, face)
        print(
            f"{name:28s} face region changed {record['face_region_changed_fraction']:.0%}: lower third "
            f"{shares['lower']:.0%}, middle {shares['middle']:.0%}, upper {shares['upper']:.0%}; brain voxels "
            f"changed {record['brain_voxels_changed_fraction']:.4%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
