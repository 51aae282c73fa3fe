"""Benchmark of the brain extraction after Smith (2002) (defacebench.analysis.bet_like).

    python bench/bench_bet_like.py [--route roi|plain] [--n 3] [--seed 2024] [--out /tmp/bench_bet_like]
                                   [--real ../shared/data/real-bids] [--deface IXI012 ...]
                                   [--parts real deface simulated]

Prints, as measured:

1. simulated healthy subjects at 1 mm (``--n`` subjects, seed ``--seed``): Dice of the bet_like
   mask against the true intracranial region (dseg CSF + GM + WM) and the true brain (GM + WM),
   its volume against the true intracranial volume, wall and CPU time, reruns;
2. the real faces (sub-IXI012, IXI013, xa30, otsu): bet_like against deepbet (no truth there):
   Dice, volumes, time; a figure with both outlines on three planes (``real_faces.png``);
3. defacing sensitivity on the subjects of ``--deface`` (default IXI012): each method of
   defacebench.deface on the full T1w, then bet_like and deepbet on the defaced image; the volume
   change against the full image and the Dice of the two masks (``defaced_<subject>.png``).

CPU time is reported beside wall time because the machine is shared (the wall time depends on
what else runs).
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REAL_FACES = ("IXI012", "IXI013", "xa30", "otsu")
METHODS = ("quickshear", "facemasking", "mri_deface", "pydeface")


def dice(a, b) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def ml(mask, img) -> float:
    return float(mask.sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000)


#: "roi": the classic extraction (whole-head affine, standard-space ROI, then bet_like; the NBV arm's
#: ``brain_backend="bet-like"``); "plain": bet_like on the whole field of view (bet2 alone).
ROUTE = "roi"


def _bet_like(img):
    from defacebench.analysis import head_registration as head_reg
    from defacebench.analysis.bet_like import bet_like_brain_mask
    from defacebench.io import from_canonical, to_canonical

    if ROUTE == "plain":
        return bet_like_brain_mask(img)
    canonical = to_canonical(img)
    mask, info = head_reg.bet_like_in_standard_space_roi(canonical, head_reg.head_to_mni(canonical))
    return np.asarray(from_canonical(mask, img), bool), info


def timed_bet_like(img):
    """(mask or None, info or failure text, wall s, CPU s)."""
    from defacebench.records import AnalysisFailure

    wall, cpu = time.perf_counter(), time.process_time()
    try:
        mask, info = _bet_like(img)
    except AnalysisFailure as failure:
        mask, info = None, f"FAILED ({failure.reason})"
    return mask, info, time.perf_counter() - wall, time.process_time() - cpu


def describe(info) -> str:
    if isinstance(info, str):
        return info
    return f"passes {info['passes']}" + (
        f" (scores {info['self_intersection_scores']})" if "self_intersection_scores" in info else ""
    )


def canonical_mask(mask, img) -> np.ndarray:
    """``mask`` (on ``img``'s grid) reoriented as nibabel's closest canonical (RAS) image."""
    return np.asarray(nib.as_closest_canonical(nib.Nifti1Image(mask.astype(np.uint8), img.affine)).dataobj) > 0


def outlines(rows, path: Path) -> None:
    """One row per (title, image, bet_like mask or None, deepbet mask): three planes through the brain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 3.3 * len(rows)), squeeze=False)
    for ax_row, (title, img, mask, reference) in zip(axes, rows):
        data = nib.as_closest_canonical(img).get_fdata()
        ref = canonical_mask(reference, img)
        bet = canonical_mask(mask, img) if mask is not None else None
        centre = np.argwhere(ref).mean(axis=0).astype(int)
        vmax = np.percentile(data, 99.5)
        for axis, ax in enumerate(ax_row):
            ax.imshow(np.take(data, centre[axis], axis=axis).T, origin="lower", cmap="gray", vmax=vmax)
            ax.contour(np.take(ref, centre[axis], axis=axis).T, [0.5], colors="c", linewidths=0.7)
            if bet is not None:
                ax.contour(np.take(bet, centre[axis], axis=axis).T, [0.5], colors="r", linewidths=0.9)
            ax.set_axis_off()
        ax_row[0].set_title(title, fontsize=8, loc="left")
    fig.suptitle("red: bet_like (after Smith 2002), cyan: deepbet", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def simulated(args) -> None:
    from defacebench.simulate import prepare_anatomy, simulate_subject
    from defacebench.simulate.anatomy import CSF, GM, WM, is_current

    anatomy = args.out / "anatomy"
    if not is_current(anatomy):
        t = time.perf_counter()
        prepare_anatomy(anatomy, threads=2)
        print(f"prepare_anatomy: {time.perf_counter() - t:.0f} s")
    print(f"\n1. simulated healthy subjects at 1 mm, n = {args.n}, seed {args.seed}:")
    rows = []
    for i in range(1, args.n + 1):
        subject = f"{i:03d}"
        root = args.out / "simulated"
        truth = simulate_subject("healthy", subject, args.seed, anatomy, root, {"voxel_size": 1.0})
        img = nib.load(str(root / f"sub-{subject}/anat/sub-{subject}_T1w.nii.gz"))
        dseg = np.asarray(
            nib.load(str(root / f"derivatives/truth/sub-{subject}/anat/sub-{subject}_dseg.nii.gz")).dataobj
        )
        intracranial = np.isin(dseg, (CSF, GM, WM))
        brain = np.isin(dseg, (GM, WM))
        mask, info, wall, cpu = timed_bet_like(img)
        line = f"  sub-{subject} {img.shape} {truth.get('orientation', '')}: "
        if mask is None:
            line += describe(info)
        else:
            rows.append(
                (dice(mask, intracranial), dice(mask, brain), ml(mask, img) / ml(intracranial, img) - 1, wall, cpu)
            )
            line += (
                f"Dice vs intracranial {rows[-1][0]:.3f}, vs brain {rows[-1][1]:.3f}; volume {ml(mask, img):.0f} ml "
                f"(true intracranial {ml(intracranial, img):.0f}, {100 * rows[-1][2]:+.1f} %); "
            )
        print(line + f"{wall:.1f} s wall, {cpu:.1f} s CPU; {describe(info)}")
    if rows:
        r = np.array(rows)
        print(
            f"  mean Dice vs intracranial {r[:, 0].mean():.3f} (min {r[:, 0].min():.3f}), vs brain {r[:, 1].mean():.3f}; "
            f"volume error {100 * r[:, 2].mean():+.1f} %; wall {r[:, 3].mean():.1f} s, CPU {r[:, 4].mean():.1f} s per image; "
            f"failures {args.n - len(rows)}/{args.n}"
        )


def t1w(real: Path, subject: str):
    return nib.load(glob.glob(str(real / f"sub-{subject}/anat/sub-{subject}_T1w.nii*"))[0])


def real_faces(args) -> None:
    from defacebench.brain import extract_brain

    print("\n2. real faces: bet_like against deepbet")
    rows = []
    for subject in REAL_FACES:
        img = t1w(args.real, subject)
        reference = extract_brain(img)
        mask, info, wall, cpu = timed_bet_like(img)
        line = f"  sub-{subject} {img.shape} {nib.aff2axcodes(img.affine)}: deepbet {ml(reference, img):.0f} ml; "
        if mask is not None:
            line += f"bet_like {ml(mask, img):.0f} ml, Dice {dice(mask, reference):.3f}; "
        print(line + f"{wall:.1f} s wall, {cpu:.1f} s CPU; {describe(info)}")
        title = f"sub-{subject}: " + (f"Dice {dice(mask, reference):.3f}" if mask is not None else "bet_like failed")
        rows.append((title, img, mask, reference))
    outlines(rows, args.out / "real_faces.png")
    print(f"  figure: {args.out / 'real_faces.png'}")


def defacing(args) -> None:
    from defacebench.brain import extract_brain
    from defacebench.deface.run import deface_image, prepare_subject
    from defacebench.records import AnalysisFailure

    print("\n3. defacing sensitivity: volume change against the full image (Dice of defaced vs full mask)")
    for subject in args.deface:
        img = t1w(args.real, subject)
        prep = prepare_subject(img)
        full_bet, info, _, _ = timed_bet_like(img)
        full_deep = prep["brain_mask"]
        print(
            f"  sub-{subject} full: bet_like {ml(full_bet, img) if full_bet is not None else float('nan'):.0f} ml "
            f"({describe(info)}), deepbet {ml(full_deep, img):.0f} ml"
        )
        rows = [(f"sub-{subject} full", img, full_bet, full_deep)]
        for method in METHODS:
            try:
                defaced, _ = deface_image(
                    method, img, brain_mask=prep.get("brain_mask"), face_region=prep.get("face_region")
                )
            except AnalysisFailure as failure:
                print(f"    {method}: defacing failed ({failure.reason})")
                continue
            mask, info, _, _ = timed_bet_like(defaced)
            deep = extract_brain(defaced)
            parts = []
            if mask is not None and full_bet is not None:
                parts.append(
                    f"bet_like {100 * (ml(mask, img) / ml(full_bet, img) - 1):+.1f} % (Dice {dice(mask, full_bet):.3f}, "
                    f"{describe(info)})"
                )
            else:
                parts.append(f"bet_like {describe(info) if mask is None else 'full image failed'}")
            parts.append(
                f"deepbet {100 * (ml(deep, img) / ml(full_deep, img) - 1):+.1f} % (Dice {dice(deep, full_deep):.3f})"
            )
            print(f"    {method:12s} " + "; ".join(parts))
            rows.append((f"sub-{subject} {method}", defaced, mask, deep))
        outlines(rows, args.out / f"defaced_{subject}.png")
        print(f"    figure: {args.out / f'defaced_{subject}.png'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3, help="simulated healthy subjects")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_bet_like"))
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real-bids")
    parser.add_argument("--deface", nargs="*", default=["IXI012"], help="real subjects to deface")
    parser.add_argument(
        "--parts", nargs="*", default=["real", "deface", "simulated"], choices=["real", "deface", "simulated"]
    )
    parser.add_argument(
        "--route", choices=["roi", "plain"], default="roi", help="classic extraction inside the ROI, or bet_like alone"
    )
    args = parser.parse_args()
    global ROUTE
    ROUTE = args.route
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.real.exists() and {"real", "deface"} & set(args.parts):
        print(f"real scans not found at {args.real}: parts 2 and 3 skipped")
        args.parts = [p for p in args.parts if p == "simulated"]
    if "real" in args.parts:
        real_faces(args)
    if "deface" in args.parts and args.deface:
        defacing(args)
    if "simulated" in args.parts:
        simulated(args)


if __name__ == "__main__":
    main()
