"""How real are the simulated heads where defacing acts? Real faces against simulated heads (issue 19).

    python bench/bench_sim_realism.py --real IXI012 IXI013 xa30 otsu            # the shared real faces
    python bench/bench_sim_realism.py --simulated 4 --voxel-size 2              # default simulated heads
    python bench/bench_sim_realism.py --simulated 4 --voxel-size 2 --head-realism '{"enabled": true}'
    python bench/bench_sim_realism.py ... --nbv                                 # also the classic NBV

For every full T1w and its defaced variants (quickshear, facemasking, mri_deface, pydeface, made by
``defacebench.deface`` as the workflow makes them, from one preparation per subject):

* the classic NBV pipeline's whole-head VSCALING (``head_registration.head_to_mni``: the whole-head
  ANTs affine to PyDeface's mean head, then the fixed template -> MNI152 affine), and with ``--nbv``
  the classic NBV itself (``normalised_brain_volume(pipeline="classic")``; the whole-head affine is
  computed once per image, memoised as in ``bench_ablation.py``);
* descriptive statistics of the full head that tell real from simulated heads apart
  (:func:`head_statistics`): how much of the head lies below the brain, subcutaneous fat and
  non-brain tissue relative to white matter, the air's mean and spread, the centre of mass;
* per method, how much of the head it removes (:func:`removal_statistics`).

Writes ``<out>/images.tsv`` (one row per full image: statistics), ``<out>/variants.tsv`` (one row
per image and method: VSCALING and NBV full and defaced, their % change, removal) and
``<out>/summary.md`` (means per group and method). Results per image are cached in ``<out>/cache``
by the image's voxels, so a rerun measures only new images. Simulated heads are written to
``<out>/cohort-<tag>`` (seed ``--seed``, subjects 001..N, kind healthy).

Runs one image at a time on one thread (``DEFACEBENCH_THREADS=1``): the machine is shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("DEFACEBENCH_THREADS", "1")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_BIDS = REPO.parent / "shared" / "data" / "real-bids"
METHODS = ("quickshear", "facemasking", "mri_deface", "pydeface")
#: Bump when what is measured per image changes (the cache is keyed by it).
CACHE_VERSION = 2


def _image_key(img: nib.Nifti1Image, *extra) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(np.asarray(img.dataobj)).tobytes())
    digest.update(np.asarray(img.affine, float).tobytes())
    digest.update(repr((CACHE_VERSION, *extra)).encode())
    return digest.hexdigest()[:16]


def head_threshold(data: np.ndarray) -> float:
    """BET's head threshold ``t2 + 0.1 (t98 - t2)`` (Smith 2002)."""
    from defacebench.analysis.bet_like import robust_range

    t2, t98 = robust_range(data)
    return float(t2 + 0.1 * (t98 - t2))


def head_mask(data: np.ndarray) -> np.ndarray:
    """The head: voxels above BET's head threshold (:func:`head_threshold`), closed, largest part, holes filled."""
    mask = ndimage.binary_closing(data > head_threshold(data), iterations=2)
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    for z in range(mask.shape[2]):  # per axial slice: the airway and sinuses are head, not air
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return mask


def head_statistics(img: nib.Nifti1Image, brain: np.ndarray) -> dict:
    """What whole-head steps see of a full head (RAS voxel order ``img``, deepbet ``brain`` mask on its grid).

    White matter's level is the median of the brightest 40 % of the brain mask's voxels (WM is
    about 40 % of an adult brain and the brightest tissue of a T1w). Fat is the 95th and 99th
    percentile of the head outside the brain mask dilated by 5 mm (scalp, face and neck fat are
    the brightest non-brain tissue of a T1w). "Below the brain" is below the brain mask's lowest
    voxel along the image's inferior-superior axis; the neck is head more than 40 mm below it.
    The air is everything more than 10 mm outside the head mask.
    """
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = np.asarray(img.header.get_zooms()[:3], float)
    voxel_ml = float(np.prod(zooms)) / 1000
    values = data[brain]
    wm = float(np.median(values[values >= np.percentile(values, 60)]))
    head = head_mask(data)
    near_brain = ndimage.distance_transform_edt(~brain, sampling=zooms) <= 5
    outside = head & ~near_brain
    bottom = int(np.flatnonzero(brain.any(axis=(0, 1))).min())
    z_mm = np.arange(data.shape[2]) * zooms[2]
    depth_below = (bottom * zooms[2] - z_mm)[None, None, :]  # mm below the brain's lowest slice
    below = head & (depth_below > 0)
    neck = head & (depth_below > 40)
    air = ndimage.distance_transform_edt(~head, sampling=zooms) > 10
    centre = np.argwhere(head).mean(axis=0) * zooms
    brain_centre = np.argwhere(brain).mean(axis=0) * zooms
    return {
        "voxel_mm": float(zooms.mean()),
        "fov_mm": [round(float(v), 1) for v in np.asarray(data.shape) * zooms],
        "head_ml": float(head.sum() * voxel_ml),
        "brain_mask_ml": float(brain.sum() * voxel_ml),
        "below_brain_fraction": float(below.sum() / head.sum()),
        "neck_fraction": float(neck.sum() / head.sum()),
        "head_extent_below_brain_mm": float(depth_below[0, 0, np.flatnonzero(head.any(axis=(0, 1))).min()]),
        # the raw threshold: the mask's closing erodes the grid's edge slices
        "head_at_fov_bottom_cm2": float((data[:, :, 0] > head_threshold(data)).sum() * zooms[0] * zooms[1] / 100),
        "fat_p95_to_wm": float(np.percentile(data[outside], 95) / wm),
        "fat_p99_to_wm": float(np.percentile(data[outside], 99) / wm),
        "nonbrain_median_to_wm": float(np.median(data[outside]) / wm),
        "air_mean_to_wm": float(data[air].mean() / wm) if air.any() else float("nan"),
        "air_sd_to_wm": float(data[air].std() / wm) if air.any() else float("nan"),
        "air_p99_to_wm": float(np.percentile(data[air], 99) / wm) if air.any() else float("nan"),
        "head_centre_above_brain_centre_mm": float(centre[2] - brain_centre[2]),
    }


def removal_statistics(full: nib.Nifti1Image, defaced: nib.Nifti1Image, head: np.ndarray, wm: float) -> dict:
    """Share of the full head a method zeroes (``removed``) or changes by more than 5 % of WM (``changed``)."""
    before = np.asarray(full.dataobj, dtype=np.float32)
    after = np.asarray(defaced.dataobj, dtype=np.float32)
    changed = np.abs(after - before) > 0.05 * wm
    return {
        "removed_head_fraction": float((head & (after <= 0) & (before > 0)).sum() / head.sum()),
        "changed_head_fraction": float((head & changed).sum() / head.sum()),
    }


def _install_memos():
    """bench_ablation's memoised whole-head affine and masks (one registration per image variant)."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_ablation import _install_memos as install

    install()


def measure_image(path: Path, methods, nbv: bool, cache: Path) -> dict:
    """Statistics of one full T1w and, per method, its whole-head VSCALING (and classic NBV) full vs defaced."""
    from defacebench.analysis.head_registration import head_to_mni
    from defacebench.analysis.nbv import normalised_brain_volume
    from defacebench.analysis.registration import volume_scaling
    from defacebench.deface import deface_image, prepare_subject
    from defacebench.io import to_canonical
    from defacebench.records import AnalysisFailure

    # defaced as the workflow defaces: the stored image (its voxel order, data type and scaling)
    img = nib.load(str(path))
    key = _image_key(img, tuple(methods), nbv)
    cached = cache / f"{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    start = time.process_time()
    prep = prepare_subject(img)
    if "brain_mask" not in prep:
        raise RuntimeError(f"{path}: no brain mask ({prep.get('brain_mask_failure')})")
    canonical = to_canonical(img)  # statistics in RAS voxel order (inferior-superior is axis 2)
    brain = np.asarray(to_canonical(nib.Nifti1Image(prep["brain_mask"].astype(np.uint8), img.affine)).dataobj) > 0
    stats = head_statistics(canonical, brain)
    head = head_mask(np.asarray(canonical.dataobj, dtype=np.float32))
    values = np.asarray(canonical.dataobj, dtype=np.float32)[brain]
    wm = float(np.median(values[values >= np.percentile(values, 60)]))

    def analyse(variant: nib.Nifti1Image) -> dict:
        _install_memos()  # each image variant starts with empty memories
        out: dict = {}
        try:
            out["vscaling"] = volume_scaling(head_to_mni(to_canonical(variant)))
        except AnalysisFailure as failure:
            out["vscaling_failure"] = f"{failure.stage}: {failure.reason}"
        if nbv:
            try:
                result = normalised_brain_volume({"T1w": variant}, threads=1, pipeline="classic")
                out.update(nbv=result["value"], brain_ml=result["brain_ml"])
            except AnalysisFailure as failure:
                out["nbv_failure"] = f"{failure.stage}: {failure.reason}"
        return out

    result = {"path": str(path), "stats": stats, "full": analyse(img), "methods": {}}
    for method in methods:
        try:
            defaced, _ = deface_image(
                method, img, brain_mask=prep.get("brain_mask"), face_region=prep.get("face_region")
            )
        except AnalysisFailure as failure:
            result["methods"][method] = {"deface_failure": f"{failure.stage}: {failure.reason}"}
            continue
        result["methods"][method] = {
            **removal_statistics(canonical, to_canonical(defaced), head, wm),
            **analyse(defaced),
        }
    result["cpu_s"] = round(time.process_time() - start, 1)
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result, indent=1, sort_keys=True))
    return result


def simulate_heads(n: int, voxel_size: float, head_realism: dict | None, seed: int, out: Path) -> list[Path]:
    """``n`` simulated healthy heads (subjects 001..n of ``seed``); already simulated ones are kept."""
    from defacebench.simulate import prepare_anatomy, simulate_subject
    from defacebench.simulate.anatomy import is_current

    anatomy = out.parent / "anatomy"
    if not is_current(anatomy):
        prepare_anatomy(anatomy, threads=1)
    settings = {"voxel_size": voxel_size}
    if head_realism is not None:  # {}: every default
        settings["head_realism"] = head_realism
    paths = []
    for i in range(1, n + 1):
        subject = f"{i:03d}"
        t1w = out / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
        if not t1w.exists():
            simulate_subject("healthy", subject, seed, anatomy, out, settings)
        paths.append(t1w)
    return paths


def rows_of(group: str, subject: str, result: dict) -> tuple[dict, list[dict]]:
    image_row = {"group": group, "subject": subject, "cpu_s": result.get("cpu_s"), **result["stats"]}
    image_row["fov_mm"] = "x".join(f"{v:g}" for v in image_row["fov_mm"])
    full = result["full"]
    variant_rows = []
    for method, entry in result["methods"].items():
        row = {"group": group, "subject": subject, "method": method}
        row.update({k: v for k, v in entry.items() if k.endswith("_fraction") or k.endswith("_failure")})
        for quantity in ("vscaling", "nbv"):
            if quantity in full and quantity in entry:
                row[f"{quantity}_full"] = full[quantity]
                row[f"{quantity}_defaced"] = entry[quantity]
                row[f"{quantity}_change_pct"] = 100 * (entry[quantity] - full[quantity]) / full[quantity]
        variant_rows.append(row)
    return image_row, variant_rows


def agreement(variants: pd.DataFrame) -> pd.DataFrame:
    """Per group and method, the study's statistics of classic NBV, defaced against full.

    ``defacebench.tables.agreement_row`` (mean difference, paired t test, ICC(A,1) with its 95 % CI),
    as the workflow's agreement tables give them.
    """
    from defacebench.tables import agreement_row

    rows = []
    for (group, method), rows_of_method in variants.dropna(subset=["nbv_full", "nbv_defaced"]).groupby(
        ["group", "method"]
    ):
        stats = agreement_row(rows_of_method["nbv_full"].to_numpy(), rows_of_method["nbv_defaced"].to_numpy())
        rows.append(
            {
                "group": group,
                "method": method,
                "n": stats["n_complete"],
                "mean_diff_ml": stats["mean_diff"],
                "mean_change_pct": rows_of_method["nbv_change_pct"].mean(),
                "paired_t_p": stats["t_p"],
                "icc_a1": stats["icc_a1"],
                "icc_ci_low": stats["icc_a1_ci_low"],
                "icc_ci_high": stats["icc_a1_ci_high"],
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", nargs="*", default=[], help="subjects of the shared real sample (with a face)")
    parser.add_argument("--simulated", type=int, default=0, help="number of simulated healthy heads")
    parser.add_argument("--voxel-size", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=2019020)
    parser.add_argument("--head-realism", default=None, help="simulation.head_realism as JSON (default: off)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--nbv", action="store_true", help="also the classic NBV (about 30 s per image)")
    parser.add_argument("--out", default="/tmp/defacebench-sim-realism")
    parser.add_argument("--tag", default=None, help="name of this run's simulated group (default from the options)")
    parser.add_argument(
        "--summarise", metavar="VARIANTS_TSV", help="only print the NBV agreement of an earlier run's variants_*.tsv"
    )
    args = parser.parse_args()
    if args.summarise:
        print(agreement(pd.read_csv(args.summarise, sep="\t")).to_markdown(index=False, floatfmt=".4g"))
        return
    out = Path(args.out)
    realism = json.loads(args.head_realism) if args.head_realism else None
    todo: list[tuple[str, str, Path]] = []
    for subject in args.real:
        todo.append(("real", subject, sorted((REAL_BIDS / f"sub-{subject}" / "anat").glob("*_T1w.nii*"))[0]))
    if args.simulated:
        tag = args.tag or ("realistic" if realism is not None else "default") + f"-{args.voxel_size:g}mm"
        paths = simulate_heads(args.simulated, args.voxel_size, realism, args.seed, out / f"cohort-{tag}")
        todo += [(f"sim-{tag}", p.parent.parent.name[4:], p) for p in paths]
    image_rows, variant_rows = [], []
    for group, subject, path in todo:
        result = measure_image(path, args.methods, args.nbv, out / "cache")
        image_row, rows = rows_of(group, subject, result)
        image_rows.append(image_row)
        variant_rows += rows
        shown = {r["method"]: round(r.get("vscaling_change_pct", float("nan")), 2) for r in rows}
        print(f"{group} {subject}: VSCALING change % {shown} ({result.get('cpu_s')} s CPU)", flush=True)
    images, variants = pd.DataFrame(image_rows), pd.DataFrame(variant_rows)
    tag = "_".join(sorted({g for g, _, _ in todo}))
    images.to_csv(out / f"images_{tag}.tsv", sep="\t", index=False, float_format="%.4g")
    variants.to_csv(out / f"variants_{tag}.tsv", sep="\t", index=False, float_format="%.5g")
    numeric = [c for c in images.columns if c not in ("group", "subject", "fov_mm")]
    by_image = images.groupby("group")[numeric].mean().T
    change_columns = [c for c in variants.columns if c.endswith(("_change_pct", "_fraction"))]
    by_method = variants.groupby(["group", "method"])[change_columns].agg(["mean", "min", "max"])
    text = (
        "## Head statistics (mean per group)\n\n"
        + by_image.to_markdown(floatfmt=".3g")
        + "\n\n## Change after defacing, defaced vs full (mean, min, max per group and method)\n\n"
        + by_method.to_markdown(floatfmt=".3g")
        + "\n"
    )
    if args.nbv:
        text += (
            "\n## Classic NBV, defaced vs full\n\n"
            + agreement(variants).to_markdown(index=False, floatfmt=".4g")
            + "\n"
        )
    (out / f"summary_{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
