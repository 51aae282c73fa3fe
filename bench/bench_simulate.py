"""Benchmark of the simulated cohorts: speed, memory, determinism, truth ranges, deepbet agreement.

    python bench/bench_simulate.py [--n 8] [--out /tmp/bench_simulate]

Prints: prepare_anatomy wall time (and whether two runs give identical files);
one subject of each cohort at 1 mm in a fresh process (wall time, peak RSS;
target <= 30 s, <= 3 GB on 2 cores); byte identity of a re-run; over ``--n``
subjects per cohort the spread of true NBV, lesion and tumour volumes; and the
Dice of deepbet's mask (defacebench.brain.extract_brain) against the true
intracranial region (GM + WM + CSF) and against GM + WM.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys, time
from pathlib import Path
from defacebench.simulate import simulate_subject
kind, subject, seed, anatomy, root = sys.argv[1:6]
t = time.perf_counter()
truth = simulate_subject(kind, subject, int(seed), Path(anatomy), Path(root), {"voxel_size": 1.0})
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(kind, subject, seed, anatomy, root) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, subject, str(seed), str(anatomy), str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def dice(a, b) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8, help="subjects per cohort for the truth ranges and Dice")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_simulate"))
    args = parser.parse_args()
    import nibabel as nib

    from defacebench.brain import extract_brain
    from defacebench.simulate import COHORT_KINDS, prepare_anatomy, simulate_subject, write_dataset_files

    out = args.out
    anatomy = out / "anatomy"
    t = time.perf_counter()
    prepare_anatomy(anatomy, threads=2)
    print(f"prepare_anatomy: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    prepare_anatomy(out / "anatomy_again", threads=2)
    print(
        f"prepare_anatomy again: {time.perf_counter() - t:.1f} s; identical files: "
        f"{same_tree(anatomy, out / 'anatomy_again')}"
    )

    print("\none subject per cohort at 1 mm, fresh process each (targets <= 30 s, <= 3 GB):")
    for kind in COHORT_KINDS:
        first = run_child(kind, "001", 1, anatomy, out / "speed" / kind)
        again = run_child(kind, "001", 1, anatomy, out / "speed_again" / kind)
        print(
            f"  {kind:8s} {first['seconds']:5.1f} s  peak RSS {first['peak_rss_mb']:6.0f} MB  "
            f"(re-run {again['seconds']:.1f} s; byte-identical: {same_tree(out / 'speed' / kind, out / 'speed_again' / kind)})"
        )

    print(f"\n{args.n} subjects per cohort at 1 mm (seed 2024):")
    for kind in COHORT_KINDS:
        root = out / "cohorts" / kind
        truths, dices = [], []
        for i in range(1, args.n + 1):
            subject = f"{i:03d}"
            truth = simulate_subject(kind, subject, 2024, anatomy, root, {"voxel_size": 1.0})
            truths.append(truth)
            t1 = nib.load(str(root / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"))
            dseg = np.asarray(
                nib.load(str(root / f"derivatives/truth/sub-{subject}/anat/sub-{subject}_dseg.nii.gz")).dataobj
            )
            mask = extract_brain(t1)
            dices.append((dice(mask, (dseg >= 1) & (dseg <= 3)), dice(mask, (dseg == 2) | (dseg == 3))))
        write_dataset_files(kind, root, truths, name=kind)
        nbv = np.array([t["nbv_ml"] for t in truths])
        print(
            f"  {kind}: true NBV {nbv.min():.0f}-{nbv.max():.0f} ml (mean {nbv.mean():.0f}); "
            f"pitch {min(t['pitch_deg'] for t in truths):.1f}..{max(t['pitch_deg'] for t in truths):.1f} deg; "
            f"chin cut {sum(t['chin_cut'] for t in truths)}/{len(truths)}; "
            f"thick FLAIR {sum((t['flair_slice_mm'] or 0) > 1.5 for t in truths)}; "
            f"reoriented {sum(t['orientation'] != 'RAS' for t in truths)}"
        )
        if kind == "ms":
            lesion = np.array([t["lesion_ml"] for t in truths])
            print(f"    lesion volume {lesion.min():.1f}-{lesion.max():.1f} ml (median {np.median(lesion):.1f})")
        if kind == "glioma":
            core = np.array([t["tumour_core_ml"] for t in truths])
            whole = np.array([t["whole_tumour_ml"] for t in truths])
            print(
                f"    tumour core {core.min():.1f}-{core.max():.1f} ml, whole tumour {whole.min():.1f}-{whole.max():.1f} ml"
            )
        d = np.array(dices)
        print(
            f"    deepbet Dice vs GM+WM+CSF (intracranial): min {d[:, 0].min():.3f} mean {d[:, 0].mean():.3f}; "
            f"vs GM+WM: min {d[:, 1].min():.3f} mean {d[:, 1].mean():.3f}"
        )
        print(f"    contact sheet: {root / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
