"""Speed, memory and accuracy of the NBV arm (defacebench.analysis.nbv).

Run: python bench/bench_nbv.py [--threads 2]
Prints per image: NBV, GM, WM, VSCALING, stage times, wall time, and the
process's peak RSS; GM/WM of the segmentation on nilearn's MNI152 T1 against
the sums of its GM/WM probability maps; and, when the simulator exists
(defacebench.simulate.simulate_subject), NBV error against simulated truth.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from defacebench.analysis.nbv import normalised_brain_volume
from defacebench.analysis.segmentation import segment_tissues
from defacebench.io import load_image
from defacebench.records import AnalysisFailure
from defacebench.templates import mni152, pydeface_head

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-bids"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name, img, threads):
    start = time.perf_counter()
    try:
        r = normalised_brain_volume({"T1w": img}, threads=threads, plausible_range_ml=None)
    except AnalysisFailure as failure:
        print(f"{name:12s} FAILED at {failure.stage}: {failure.reason} ({time.perf_counter() - start:.1f} s)")
        return None
    wall = time.perf_counter() - start
    print(
        f"{name:12s} NBV {r['value']:7.1f} ml  GM {r['gm_ml']:6.1f}  WM {r['wm_ml']:6.1f}  CSF {r['csf_ml']:6.1f}  "
        f"VSCALING {r['vscaling']:.3f} (brain-only {r['brain_only_vscaling']:.3f})  wall {wall:5.1f} s  "
        f"stages {r['stage_times_s']}  peak RSS so far {peak_rss_mb():.0f} MB"
    )
    return r


def mni_check():
    t1 = nib.load(mni152("t1"))
    data = np.asarray(t1.dataobj, dtype=np.float32)
    mask = data > 0
    gm = np.asarray(nib.load(mni152("gm")).dataobj, dtype=np.float64) / 255.0
    wm = np.asarray(nib.load(mni152("wm")).dataobj, dtype=np.float64) / 255.0
    start = time.perf_counter()
    pve, _ = segment_tissues(data, mask)
    wall = time.perf_counter() - start
    gm_ml, wm_ml = pve[1].sum() / 1000, pve[2].sum() / 1000
    gm_t, wm_t = gm[mask].sum() / 1000, wm[mask].sum() / 1000
    print(
        f"MNI152 segmentation ({wall:.1f} s): GM {gm_ml:.1f} vs map {gm_t:.1f} ml ({100 * (gm_ml / gm_t - 1):+.1f} %), "
        f"WM {wm_ml:.1f} vs map {wm_t:.1f} ml ({100 * (wm_ml / wm_t - 1):+.1f} %)"
    )


def simulated(threads, n=6):
    try:
        from defacebench.simulate import prepare_anatomy, simulate_subject
    except ImportError:
        print("simulator not available: no accuracy against simulated truth")
        return
    from defacebench.cohorts import MODALITY_FILENAME

    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        anatomy = Path(tmp) / "anatomy"
        prepare_anatomy(anatomy)
        for i in range(n):
            subject = f"sim{i:02d}"
            truth = simulate_subject("healthy", subject, 1000 + i, anatomy, Path(tmp) / "bids", {})
            path = next((Path(tmp) / "bids").rglob(f"sub-{subject}*{MODALITY_FILENAME['T1w']}*"))
            r = run_one(subject, load_image(path), threads)
            if r:
                err = 100 * (r["value"] / truth["nbv_ml"] - 1)
                # NBV = (GM + WM) x VSCALING: say which factor the error comes from
                brain_err = 100 * (r["brain_ml"] / truth["brain_ml"] - 1)
                scaling_err = 100 * (r["vscaling"] / truth["vscaling"] - 1)
                errors.append((abs(err), abs(brain_err), abs(scaling_err)))
                print(f"   truth NBV {truth['nbv_ml']:.1f} ml (GM+WM {truth['brain_ml']:.1f} ml, VSCALING "
                      f"{truth['vscaling']:.3f}): NBV error {err:+.2f} %, GM+WM {brain_err:+.2f} %, "
                      f"VSCALING {scaling_err:+.2f} %")
    if errors:
        nbv, brain, scaling = np.mean(errors, axis=0)
        print(f"mean absolute error vs simulated truth (n={len(errors)}): NBV {nbv:.2f} %, GM+WM {brain:.2f} %, "
              f"VSCALING {scaling:.2f} %")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    mni_check()
    images = {"pydeface-head": load_image(pydeface_head())}
    for sub in ("otsu", "IXI012", "IXI013", "xa30", "ms07"):
        path = REAL / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        if path.exists():
            images[sub] = load_image(path)
    for name, img in images.items():
        run_one(name, img, args.threads)
    simulated(args.threads)
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
