"""Is there a face to remove? The face check's figures on the real scans and on simulated heads.

    python bench/bench_face_check.py real
    python bench/bench_face_check.py simulated --n 4 --seed 7 [--voxel-size 2] [--out /tmp/bench_face_check]

Per scan: deepbet's brain mask (defacebench.brain.extract_brain), then
defacebench.deface.face.face_presence: head tissue in the face zone (ml), as a share of the brain's
volume, the verdict, and the check's wall time. Real scans: ../shared/data/real-bids (IXI012,
IXI013, xa30 and otsu have faces; ms07 and gbm7294 are skull-stripped; ms12's provider removed
the face). Simulated: --n subjects of each cohort kind (healthy, ms, glioma), written to --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from defacebench import io
from defacebench.brain import extract_brain
from defacebench.deface.face import FACE_TISSUE_FRACTION, face_presence

REAL = Path(__file__).resolve().parents[2] / "shared/data/real-bids"
REAL_SUBJECTS = {
    "IXI012": "face",
    "IXI013": "face",
    "xa30": "face",
    "otsu": "face (nose at the edge of the field of view)",
    "ms07": "skull-stripped, MNI space",
    "gbm7294": "skull-stripped, atlas space",
    "ms12": "defaced by the provider",
}


def check(path: Path) -> dict:
    img = io.load_image(path)
    brain = extract_brain(img)
    start = time.perf_counter()
    result = face_presence(img, brain)
    return {**result, "check_s": time.perf_counter() - start, "shape": img.shape[:3]}


def report(name: str, what: str, result: dict) -> None:
    print(
        f"{name:<10} {what:<46} face tissue {result['face_tissue_ml']:7.1f} ml = "
        f"{100 * result['face_tissue_fraction']:5.1f} % of brain -> has_face {result['has_face']!s:<5} "
        f"({result['check_s']:.2f} s, grid {result['shape']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=["real", "simulated"])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--voxel-size", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_face_check"))
    args = parser.parse_args()
    print(f"threshold: {100 * FACE_TISSUE_FRACTION:g} % of the brain's volume")
    if args.data == "real":
        for subject, what in REAL_SUBJECTS.items():
            report(subject, what, check(REAL / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"))
        return
    from defacebench.simulate.anatomy import is_current, prepare_anatomy
    from defacebench.simulate.subject import COHORT_KINDS, simulate_subject

    anatomy = args.out / "anatomy"
    if not is_current(anatomy):
        prepare_anatomy(anatomy, threads=1)
    bids = args.out / "bids"
    for kind in COHORT_KINDS:
        for i in range(1, args.n + 1):
            subject = f"{kind[:2]}{i:02d}"
            simulate_subject(kind, subject, args.seed, anatomy, bids, {"voxel_size": args.voxel_size})
            report(subject, f"simulated {kind}", check(bids / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"))


if __name__ == "__main__":
    main()
