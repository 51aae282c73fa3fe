"""Accuracy and speed of the lesion (WMLV) and tumour (GBV) arms.

Usage: python bench/bench_lesion_tumour.py [--n 6] [--seed 9101] [--resolution 1] [--threads 2]
        [--work /tmp/fitwork] [--source auto|simulator|phantom] [--skip-real] [--skip-sim] [--arms ms,glioma]
        [--lesion-inputs flair+t1w|flair]

On simulated subjects not used for fitting (validation seed 9101, fitting used 9001): per-subject
lesion Dice / tumour-core Dice and volume against the truth, mean Dice, and volume ICC(A,1)
against the truth (:func:`defacebench.stats.icc`); on the real sample scans (sub-ms07,
sub-gbm7294): Dice against their reference masks. The lesion arm gets the FLAIR and the T1w (its
FLAIR-and-T1w model), or with ``--lesion-inputs flair`` the FLAIR alone (its FLAIR model). Each arm runs once per subject: the timed call
is the arm's own pipeline (``lesion.lpa_like`` + ``lesion.lesion_mask``, which is what
``white_matter_lesion_volume`` does; ``tumour.segment_tumour`` + ``tumour.label_volumes``, which
is what ``glioblastoma_volume`` does), so the volume and the Dice come from the same segmentation;
its wall and CPU seconds are recorded (CPU: all threads, what it costs a study's cores, and less
sensitive than the wall time to other work on the machine). At the end: the process's peak RSS
(resource.getrusage). Targets: lesion Dice >= 0.80, core Dice >= 0.85, ICC >= 0.95 (simulated);
ms07 Dice >= 0.6, gbm7294 core Dice >= 0.7; <= 30 s (lesion) and <= 60 s (tumour) per subject on
2 cores; peak RSS <= 3 GB.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import nibabel as nib
import sys

import numpy as np
import pandas as pd

from defacebench.analysis import lesion as L
from defacebench.analysis import tumour as T
from defacebench.analysis import tumour_features as tfeat
from defacebench.overlap import dice, truth_on_grid
from defacebench.analysis.pathology_training import VALIDATION_SEED, cohort_source, training_cohort
from defacebench.io import voxel_volume_ml
from defacebench.stats import icc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model_fitting"))
from fit_lesion_model import model_images  # noqa: E402  the images each lesion model reads, as the fit reads them

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-bids"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def lesion_case(images, truth_img, threads, inputs="flair+t1w"):
    images = model_images(images, "t1w" if inputs == "flair+t1w" else "flair")
    start, cpu = time.perf_counter(), time.process_time()
    result = L.lpa_like(images, threads=threads)
    voxel_ml = voxel_volume_ml(result["canonical"])
    seg, n = L.lesion_mask(result["probability"], voxel_ml)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    truth = truth_on_grid(truth_img, images["FLAIR"]) > 0
    return {
        "value": float(seg.sum() * voxel_ml),
        "truth": float(truth.sum() * voxel_ml),
        "dice": dice(seg, truth),
        "n_lesions": n,
        "model": L.model_inputs(result["coefficients"]),
        "flair_slice_mm": float(max(result["zooms"])),
        "seconds": wall,
        "cpu_seconds": cpu,
        "rss_gb": peak_rss_gb(),
    }


def tumour_case(images, truth_img, threads, core_labels_truth=tfeat.CORE_LABELS):
    start, cpu = time.perf_counter(), time.process_time()
    segmentation = nib.as_closest_canonical(T.segment_tumour(images, threads=threads))
    labels = np.asarray(segmentation.dataobj)
    voxel_ml = voxel_volume_ml(segmentation)
    volumes = T.label_volumes(labels, voxel_ml)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    truth = truth_on_grid(truth_img, images["T1w"])
    core_truth = np.isin(truth, core_labels_truth)
    return {
        "value": volumes["value"],
        "truth": float(core_truth.sum() * voxel_ml),
        "whole": volumes["whole_tumour_ml"],
        "whole_truth": float((truth > 0).sum() * voxel_ml),
        "dice": dice(np.isin(labels, tfeat.CORE_LABELS), core_truth),
        "whole_dice": dice(labels > 0, truth > 0),
        "seconds": wall,
        "cpu_seconds": cpu,
        "rss_gb": peak_rss_gb(),
    }


def _fmt(row: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}


def simulated(kind, case, args, source) -> pd.DataFrame:
    settings = {"resolution_mm": args.resolution}
    rows = []
    extra = {"inputs": args.lesion_inputs} if kind == "ms" else {}
    for name, images, truth_img, _ in training_cohort(kind, args.n, args.seed, args.work, settings, source):
        row = {"subject": name, **case(images, truth_img, args.threads, **extra)}
        rows.append(row)
        print(kind, _fmt(row), flush=True)
    df = pd.DataFrame(rows)
    agreement = icc(df["value"], df["truth"])
    print(
        f"== {kind}: mean Dice {df['dice'].mean():.3f} (min {df['dice'].min():.3f}), volume ICC(A,1) vs truth "
        f"{agreement['icc']:.3f} [{agreement['ci_low']:.3f}, {agreement['ci_high']:.3f}], "
        f"mean {df['seconds'].mean():.1f} s, max {df['seconds'].max():.1f} s per subject "
        f"(CPU {df['cpu_seconds'].mean():.1f} s: all threads, less sensitive to other load)",
        flush=True,
    )
    if kind == "glioma":
        whole = icc(df["whole"], df["whole_truth"])
        print(f"   whole tumour: mean Dice {df['whole_dice'].mean():.3f}, ICC(A,1) {whole['icc']:.3f}", flush=True)
    return df


def real(args, arms) -> None:
    if "ms" in arms:
        anat = REAL / "sub-ms07" / "anat"
        images = {"FLAIR": nib.load(anat / "sub-ms07_FLAIR.nii.gz"), "T1w": nib.load(anat / "sub-ms07_T1w.nii.gz")}
        ref = nib.load(REAL / "derivatives/reference-masks/sub-ms07/anat/sub-ms07_desc-lesion_mask.nii.gz")
        print("real sub-ms07:", _fmt(lesion_case(images, ref, args.threads, args.lesion_inputs)), flush=True)
    if "glioma" not in arms:
        return
    anat = REAL / "sub-gbm7294" / "anat"
    names = {"T1w": "T1w", "ceT1w": "ce-gadolinium_T1w", "T2w": "T2w", "FLAIR": "FLAIR"}
    images = {m: nib.load(anat / f"sub-gbm7294_{n}.nii.gz") for m, n in names.items()}
    ref = nib.load(REAL / "derivatives/reference-masks/sub-gbm7294/anat/sub-gbm7294_desc-tumour_dseg.nii.gz")
    # its reference holds BraTS labels 1 (necrosis/non-enhancing core) and 2 (oedema) only
    print(
        "real sub-gbm7294 (core = labels 1, 3, 4):", _fmt(tumour_case(images, ref, args.threads, (1, 3, 4))), flush=True
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/fitwork")
    parser.add_argument("--source", default="auto", choices=("auto", "simulator", "phantom"))
    parser.add_argument("--arms", default="ms,glioma")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument(
        "--lesion-inputs",
        default="flair+t1w",
        choices=("flair+t1w", "flair"),
        help="the lesion arm's images: FLAIR and T1w (its FLAIR-and-T1w model) or FLAIR alone",
    )
    args = parser.parse_args()
    source = cohort_source(args.source)
    print(f"validation cohort: {source}, seed {args.seed}, {args.resolution} mm, {args.threads} threads")
    arms = args.arms.split(",")
    if not args.skip_sim:
        for kind, case in (("ms", lesion_case), ("glioma", tumour_case)):
            if kind in arms:
                simulated(kind, case, args, source)
    if not args.skip_real and REAL.exists():
        real(args, arms)
    print(f"peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
