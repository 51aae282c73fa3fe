"""The tumour plausibility checks (defacebench.analysis.tumour_plausibility) on true tumours and on artefacts.

    python bench/bench_tumour_plausibility.py [--n 8] [--seed 9101] [--work /tmp/bench_tumour_plausibility]
                                              [--real ../shared/data/real-bids]

1. Specificity: the true whole tumour of ``--n`` simulated glioma subjects (2 mm; seed 9101, the
   tumour arm's validation seed, never a study seed) and the reference labels of sub-gbm7294 in the
   shared real sample: none should be flagged.
2. Sensitivity: on each simulated brain, the two failures seen on real scans (issue 25), drawn
   synthetically: a rim (the brain's outer 5 mm, 30 % of it or all) and a midline sheet (4 mm
   either side of the mid-sagittal plane, the middle 70 % of the brain front to back, clipped to
   the brain), each with the true tumour added. Both should be flagged.

Prints the measures per case and the counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from defacebench.analysis.tumour_plausibility import tumour_plausibility


def canonical(path: Path) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.load(str(path)))


def report(name: str, whole: np.ndarray, brain: np.ndarray, zooms) -> bool:
    measures, reasons = tumour_plausibility(whole, brain, zooms)
    shown = ", ".join(f"{k} {v}" for k, v in measures.items())
    print(
        f"  {name:28s} {'FLAGGED' if reasons else 'ok     '} {shown}" + (f"  [{'; '.join(reasons)}]" if reasons else "")
    )
    return bool(reasons)


def artefacts(brain: np.ndarray, zooms) -> dict[str, np.ndarray]:
    depth = ndimage.distance_transform_edt(brain, sampling=zooms)
    rim = brain & (depth <= 5.0)
    x = np.arange(brain.shape[0]) * zooms[0]
    centre = np.average(x, weights=brain.sum(axis=(1, 2)))
    y_any = np.flatnonzero(brain.any(axis=(0, 2)))
    low, high = y_any.min(), y_any.max()
    keep = slice(int(low + 0.15 * (high - low)), int(high - 0.15 * (high - low)))
    sheet = np.zeros_like(brain)
    sheet[np.abs(x - centre) <= 4.0, keep, :] = True
    top_part = np.zeros_like(brain)
    top_part[..., int(brain.shape[2] * 0.6) :] = True
    return {"rim (whole)": rim, "rim (upper 40 %)": rim & top_part, "midline sheet": sheet & brain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=9101)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_tumour_plausibility"))
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real-bids")
    args = parser.parse_args()
    from defacebench.simulate import prepare_anatomy, simulate_subject
    from defacebench.simulate.anatomy import CSF, GM, WM, is_current

    anatomy = args.work / "anatomy"
    if not is_current(anatomy):
        prepare_anatomy(anatomy, threads=2)
    root = args.work / "simulated"
    false_flags, missed = 0, 0
    print("1-2. simulated gliomas: true tumour, then the artefacts (each with the true tumour added)")
    for i in range(1, args.n + 1):
        subject = f"{i:03d}"
        truth_dir = root / f"derivatives/truth/sub-{subject}/anat"
        if not (truth_dir / f"sub-{subject}_desc-tumour_dseg.nii.gz").exists():
            simulate_subject("glioma", subject, args.seed, anatomy, root, {"voxel_size": 2.0})
        tumour_img = canonical(truth_dir / f"sub-{subject}_desc-tumour_dseg.nii.gz")
        tumour = np.asarray(tumour_img.dataobj) > 0
        dseg = np.asarray(canonical(truth_dir / f"sub-{subject}_dseg.nii.gz").dataobj)
        brain = np.isin(dseg, (CSF, GM, WM)) | tumour
        zooms = tumour_img.header.get_zooms()[:3]
        false_flags += report(f"sub-{subject} true tumour", tumour, brain, zooms)
        for name, artefact in artefacts(brain, zooms).items():
            missed += not report(f"sub-{subject} {name}", artefact | tumour, brain, zooms)
    reference = args.real / "derivatives"
    found = sorted(reference.glob("*/sub-gbm7294/anat/*tumour_dseg.nii*")) if reference.exists() else []
    if found:
        from defacebench.brain import extract_brain

        print("real reference: sub-gbm7294 (brain from deepbet on its T1w)")
        ref = canonical(found[0])
        t1w = canonical(next((args.real / "sub-gbm7294/anat").glob("*_T1w.nii*")))
        brain = extract_brain(t1w)
        whole = np.asarray(ref.dataobj) > 0
        if whole.shape == brain.shape:
            false_flags += report("sub-gbm7294 reference", whole, brain | whole, ref.header.get_zooms()[:3])
        else:
            print(f"  sub-gbm7294: reference grid {whole.shape} differs from the T1w's {brain.shape}: skipped")
    print(f"\ntrue tumours flagged: {false_flags}; artefacts not flagged: {missed} of {3 * args.n}")


if __name__ == "__main__":
    main()
