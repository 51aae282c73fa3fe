"""Accuracy and speed of the lesion (WMLV) and tumour (GBV) arms.

Usage: python bench/bench_lesion_tumour.py [--n 6] [--seed 9101] [--resolution 1] [--threads 2]
        [--source auto|simulator|phantom] [--skip-real]

On simulated subjects not used for fitting (validation seed 9101, fitting used 9001): lesion Dice,
tumour-core Dice, and volume ICC(A,1) against the truth; on the real sample scans (sub-ms07,
sub-gbm7294): Dice against their reference masks. Per subject: wall time of each arm's public
function; at the end: the process's peak RSS (resource.getrusage). Targets: lesion Dice >= 0.80,
core Dice >= 0.85, ICC >= 0.95 (simulated); ms07 Dice >= 0.6, gbm7294 core Dice >= 0.7;
<= 30 s (lesion) and <= 60 s (tumour) per subject on 2 cores; peak RSS <= 3 GB.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from defacebench.analysis import lesion as L
from defacebench.analysis import tumour as T
from defacebench.analysis import tumour_features as tfeat
from defacebench.analysis.pathology_common import dice
from defacebench.analysis.pathology_training import VALIDATION_SEED, cohort_source, training_cohort, truth_on_grid

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-bids"


def icc_a1(a, b) -> float:
    """ICC(A,1) (absolute agreement, two-way, single measure; McGraw & Wong 1996) via pingouin."""
    import pingouin as pg

    n = len(a)
    df = pd.DataFrame({"target": list(range(n)) * 2, "rater": ["auto"] * n + ["truth"] * n, "value": list(a) + list(b)})
    icc = pg.intraclass_corr(df, targets="target", raters="rater", ratings="value")
    return float(icc.set_index("Type").loc["ICC(A,1)", "ICC"])


def lesion_case(images, truth_img, threads):
    start = time.perf_counter()
    out = L.white_matter_lesion_volume(images, threads=threads)
    wall = time.perf_counter() - start
    prob = L.lesion_probability_map(images, threads=threads)
    voxel_ml = float(np.prod(prob.header.get_zooms()[:3])) / 1000
    seg, _ = L.lesion_mask(np.asarray(nib.as_closest_canonical(prob).dataobj), voxel_ml)
    truth = truth_on_grid(truth_img, images["FLAIR"]) > 0
    return {"value": out["value"], "truth": truth.sum() * voxel_ml, "dice": dice(seg, truth), "seconds": wall}


def tumour_case(images, truth_img, threads, core_labels_truth=tfeat.CORE_LABELS):
    start = time.perf_counter()
    out = T.glioblastoma_volume(images, threads=threads)
    wall = time.perf_counter() - start
    seg = nib.as_closest_canonical(T.segment_tumour(images, threads=threads)).get_fdata()
    truth = truth_on_grid(truth_img, images["T1w"])
    voxel_ml = float(np.prod(images["T1w"].header.get_zooms()[:3])) / 1000
    core_truth = np.isin(truth, core_labels_truth)
    return {"value": out["value"], "truth": core_truth.sum() * voxel_ml, "whole": out["whole_tumour_ml"],
            "whole_truth": (truth > 0).sum() * voxel_ml, "dice": dice(np.isin(seg, tfeat.CORE_LABELS), core_truth),
            "whole_dice": dice(seg > 0, truth > 0), "seconds": wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/dfb-bench")
    parser.add_argument("--source", default="auto", choices=("auto", "simulator", "phantom"))
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    source = cohort_source(args.source)
    settings = {"resolution_mm": args.resolution}
    print(f"validation cohort: {source}, seed {args.seed}, {args.resolution} mm, {args.threads} threads")
    for kind, case in (("ms", lesion_case), ("glioma", tumour_case)):
        rows = []
        for name, images, truth_img, _ in training_cohort(kind, args.n, args.seed, args.work, settings, source):
            row = {"subject": name, **case(images, truth_img, args.threads)}
            rows.append(row)
            print(kind, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        df = pd.DataFrame(rows)
        icc = icc_a1(df["value"], df["truth"]) if len(df) > 2 else float("nan")
        print(f"== {kind}: mean Dice {df['dice'].mean():.3f} (min {df['dice'].min():.3f}), volume ICC(A,1) {icc:.3f}, "
              f"mean {df['seconds'].mean():.1f} s, max {df['seconds'].max():.1f} s per subject")
        if kind == "glioma" and len(df) > 2:
            print(f"   whole tumour: mean Dice {df['whole_dice'].mean():.3f}, ICC(A,1) {icc_a1(df['whole'], df['whole_truth']):.3f}")
    if not args.skip_real and REAL.exists():
        anat = REAL / "sub-ms07" / "anat"
        images = {"FLAIR": nib.load(anat / "sub-ms07_FLAIR.nii.gz"), "T1w": nib.load(anat / "sub-ms07_T1w.nii.gz")}
        ref = nib.load(REAL / "derivatives/reference-masks/sub-ms07/anat/sub-ms07_desc-lesion_mask.nii.gz")
        print("real sub-ms07:", lesion_case(images, ref, args.threads))
        anat = REAL / "sub-gbm7294" / "anat"
        names = {"T1w": "T1w", "ceT1w": "ce-gadolinium_T1w", "T2w": "T2w", "FLAIR": "FLAIR"}
        images = {m: nib.load(anat / f"sub-gbm7294_{n}.nii.gz") for m, n in names.items()}
        ref = nib.load(REAL / "derivatives/reference-masks/sub-gbm7294/anat/sub-gbm7294_desc-tumour_dseg.nii.gz")
        print("real sub-gbm7294 (BraTS core = labels 1, 4):", tumour_case(images, ref, args.threads, (1, 3, 4)))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
