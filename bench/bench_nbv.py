"""Speed, memory and accuracy of the NBV arm (defacebench.analysis.nbv).

Run: python bench/bench_nbv.py [--threads 2] [--n 6] [--work /tmp/nbvdiag]
Prints per image: NBV, GM, WM, VSCALING, stage times, wall time, and the
process's peak RSS; GM/WM of the segmentation on nilearn's MNI152 T1 against
the sums of its GM/WM probability maps; and the NBV error against the truth of
simulated healthy subjects (``pathology_training.simulate_cohort``, cached in ``--work``).
"""

from __future__ import annotations

import argparse
import json
import resource
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
#: Seed of the simulated healthy subjects (subject i: seed + i), shared with bench/diag_vscaling.py.
SIMULATION_SEED = 1000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(name, img, threads, segmentation=None):
    start, cpu = time.perf_counter(), time.process_time()
    try:
        r = normalised_brain_volume({"T1w": img}, threads=threads, plausible_range_ml=None, segmentation=segmentation)
    except AnalysisFailure as failure:
        print(f"{name:12s} FAILED at {failure.stage}: {failure.reason} ({time.perf_counter() - start:.1f} s)")
        return None
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"{name:12s} NBV {r['value']:7.1f} ml  GM {r['gm_ml']:6.1f}  WM {r['wm_ml']:6.1f}  CSF {r['csf_ml']:6.1f}  "
        f"VSCALING {r['vscaling']:.3f} (brain-only {r['brain_only_vscaling']:.3f})  wall {wall:5.1f} s  CPU {cpu:5.1f} s  "
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


def simulated(threads, work: Path, n=6, seed=SIMULATION_SEED, segmentation=None, voxel_size=1.0):
    from defacebench.analysis.pathology_training import simulate_cohort, subject_images

    errors = []
    # the same healthy subjects bench/diag_vscaling.py diagnoses (seeds 1000.., cached under ``work``)
    for truth in simulate_cohort("healthy", n, seed, work, {"voxel_size": voxel_size}, prefix="sim"):
        subject = truth["subject"]
        r = run_one(subject, subject_images(truth["bids_root"], subject, "healthy")["T1w"], threads, segmentation)
        if r:
            err = 100 * (r["value"] / truth["nbv_ml"] - 1)
            # NBV = (GM + WM) x VSCALING: say which factor the error comes from
            brain_err = 100 * (r["brain_ml"] / truth["brain_ml"] - 1)
            scaling_err = 100 * (r["vscaling"] / truth["vscaling"] - 1)
            errors.append((abs(err), abs(brain_err), abs(scaling_err)))
            print(
                f"   truth NBV {truth['nbv_ml']:.1f} ml (GM+WM {truth['brain_ml']:.1f} ml, VSCALING "
                f"{truth['vscaling']:.3f}, atrophy {truth['atrophy']:.2f}): NBV error {err:+.2f} %, "
                f"GM+WM {brain_err:+.2f} %, VSCALING {scaling_err:+.2f} %"
            )
    if errors:
        nbv, brain, scaling = np.mean(errors, axis=0)
        print(
            f"mean absolute error vs simulated truth (n={len(errors)}): NBV {nbv:.2f} %, GM+WM {brain:.2f} %, "
            f"VSCALING {scaling:.2f} %"
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--work", default="/tmp/nbvdiag", help="cache of the simulated subjects (shared with diag_vscaling.py)"
    )
    parser.add_argument("--n", type=int, default=6, help="simulated subjects")
    parser.add_argument(
        "--seed",
        type=int,
        default=SIMULATION_SEED,
        help="simulation seed (another seed gives subjects no setting was chosen on)",
    )
    parser.add_argument(
        "--segmentation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="segmentation setting (JSON value), e.g. reestimate_sds=true; repeatable",
    )
    parser.add_argument(
        "--voxel-size", type=float, default=1.0, help="simulated grid in mm (the demo study's simulation.voxel_size)"
    )
    parser.add_argument("--skip-real", action="store_true", help="simulated subjects only")
    args = parser.parse_args()
    segmentation = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.segmentation)}
    if args.skip_real:
        simulated(args.threads, Path(args.work), args.n, args.seed, segmentation, args.voxel_size)
        print(f"peak RSS {peak_rss_mb():.0f} MB")
        return
    mni_check()
    images = {"pydeface-head": load_image(pydeface_head())}
    for sub in ("otsu", "IXI012", "IXI013", "xa30", "ms07"):
        path = REAL / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        if path.exists():
            images[sub] = load_image(path)
    for name, img in images.items():
        run_one(name, img, args.threads, segmentation)
    simulated(args.threads, Path(args.work), args.n, args.seed, segmentation, args.voxel_size)
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
