"""The re-identification attack's timing and figures: real face scans and a simulated cohort.

    python bench/bench_privacy.py real [--out /tmp/bench_privacy/real]
    python bench/bench_privacy.py simulated --n 20 --seed 2601 [--voxel-size 1.5] [--out /tmp/bench_privacy/sim]

Per subject: the full T1w, its defaced copies (every method of defacebench.deface.METHODS, given
deepbet's brain mask and PyDeface's registered face region), and a privacy record of each
(renders from the five viewpoints, Haar and HOG detection, dlib descriptors). Prints per image the
wall and CPU seconds of rendering, detection and description (target: <= 10 s per image on 2
cores), then per variant the rank-1/rank-5 identification with Clopper-Pearson 95 % intervals
(defacebench.reidentification.report.privacy_table). Records are cached in --out, so a rerun only
ranks. Real scans: ../shared/data/real-bids (sub-IXI012, sub-IXI013, sub-xa30, sub-otsu have faces).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from defacebench import io
from defacebench.deface import METHODS, deface_image, prepare_subject
from defacebench.reidentification.image import privacy_record
from defacebench.reidentification.report import privacy_table
from defacebench.reidentification.surface import VIEWPOINTS

REAL = Path(__file__).resolve().parents[2] / "shared/data/real-bids"
REAL_FACES = ("IXI012", "IXI013", "xa30", "otsu")


def subject_records(subject: str, t1w_path: Path, out: Path, variants=("none",) + METHODS) -> list[dict]:
    """Privacy records of the full and the defaced T1w of one subject (cached as JSON in ``out``)."""
    cached = [out / "records" / f"sub-{subject}_variant-{v}.json" for v in variants]
    if all(p.exists() for p in cached):
        return [io.read_json(p) for p in cached]
    img = io.load_image(t1w_path)
    images = {"none": img}
    methods = [v for v in variants if v != "none"]
    prep = prepare_subject(img) if methods else {}
    failures = {}
    for method in methods:
        try:
            images[method], _ = deface_image(
                method, img, brain_mask=prep.get("brain_mask"), face_region=prep.get("face_region")
            )
        except Exception as exc:  # a method that fails on this head is reported, not hidden
            failures[method] = f"{type(exc).__name__}: {exc}"
    records = []
    for variant in variants:
        path = out / "records" / f"sub-{subject}_variant-{variant}.json"
        if path.exists():
            records.append(io.read_json(path))
            continue
        if variant in failures:
            record = {"status": "failed", "reason": f"defacing: {failures[variant]}"}
        else:
            wall, cpu = time.perf_counter(), time.process_time()
            record = {"status": "ok", **privacy_record(images[variant], out / "renders" / f"sub-{subject}" / variant)}
            record.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
            views = " ".join(
                f"{n}:{v['haar_faces']}/{v['hog_faces']}/{v['box_source'][0]}" for n, v in record["views"].items()
            )
            print(
                f"  sub-{subject} {variant:12s} render {record['render_s']:5.1f} s, detect {record['detect_s']:4.1f} s, "
                f"embed {record['embed_s']:4.1f} s: wall {record['wall_s']:5.1f} s, CPU {record['cpu_s']:5.1f} s  "
                f"[view:haar/hog/box {views}]",
                flush=True,
            )
        record.update(subject=subject, variant=variant)
        io.write_json(record, path)
        records.append(record)
    return records


def redescribe(records: list[dict]) -> None:
    """Recompute the descriptors of cached records from their saved renders (after a change of the face box rule)."""
    import cv2

    from defacebench.reidentification.embed import face_descriptor
    from defacebench.reidentification.image import face_box

    for record in records:
        for view in record.get("views", {}).values():
            if "render" not in view:
                continue
            rgb = cv2.cvtColor(cv2.imread(view["render"]), cv2.COLOR_BGR2RGB)
            hog = [(tuple(view["box"]), view["hog_score"])] if view.get("box_source") == "hog" else []
            view["box_source"], box = face_box(hog, tuple(view["expected_box"]))
            view["box"], view["descriptor"] = list(box), face_descriptor(rgb, box).tolist()


def report(records: list[dict], title: str) -> pd.DataFrame:
    table = privacy_table(records, list(METHODS))
    ok = [r for r in records if r.get("status") == "ok"]
    if ok:
        wall = pd.Series([r["wall_s"] for r in ok if "wall_s" in r])
        cpu = pd.Series([r["cpu_s"] for r in ok if "cpu_s" in r])
        if len(wall):
            print(
                f"{title}: per image wall {wall.median():.1f} s median ({wall.min():.1f}-{wall.max():.1f}), "
                f"CPU {cpu.median():.1f} s median ({cpu.min():.1f}-{cpu.max():.1f}); {len(VIEWPOINTS)} views"
            )
    cols = [
        "method",
        "n_images",
        "n_failed",
        "haar_view_rate",
        "hog_view_rate",
        "expected_box_rate",
        "chance_rank1",
        "rank1_hits",
        "rank1_rate",
        "rank1_ci_low",
        "rank1_ci_high",
        "rank5_hits",
        "rank5_rate",
        "rank5_ci_low",
        "rank5_ci_high",
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", choices=("real", "simulated"))
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2601)
    parser.add_argument("--voxel-size", type=float, default=1.5)
    parser.add_argument("--kind", default="healthy")
    parser.add_argument("--anatomy", type=Path, help="a prepared head model (default: prepared into --out)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--rank-only",
        action="store_true",
        help="rank the records cached in --out (computing none): a cohort whose defaced images "
        "are done for some subjects only; the gallery is every cached full head",
    )
    parser.add_argument(
        "--redescribe",
        action="store_true",
        help="recompute the cached records' descriptors from their renders before ranking",
    )
    parser.add_argument(
        "--subjects",
        help="first:last (1-based) of the cohort to compute here; ranks only "
        "when the whole cohort is computed (runs on parts of a cohort share --out)",
    )
    args = parser.parse_args()
    out = args.out or Path("/tmp/bench_privacy") / args.source
    records = []
    if args.source == "real":
        for subject in REAL_FACES:
            path = REAL / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
            if not path.exists():
                print(f"sub-{subject}: {path} absent, skipped")
                continue
            records += subject_records(subject, path, out)
        if args.redescribe:
            redescribe(records)
        report(records, f"real face scans ({len(REAL_FACES)} subjects, {REAL})")
        return
    from defacebench.simulate import prepare_anatomy, simulate_subject
    from defacebench.simulate.anatomy import is_current

    if args.rank_only:
        records = [io.read_json(p) for p in sorted((out / "records").glob("sub-*_variant-*.json"))]
        if args.redescribe:
            redescribe(records)
        done = {r["subject"] for r in records if r["variant"] != "none"}
        report(
            records,
            f"simulated {args.kind} cohort (cached records): gallery {sum(r['variant'] == 'none' for r in records)} "
            f"full heads, defaced probes from {len(done)} subjects, seed {args.seed}",
        )
        return
    anatomy = args.anatomy or out / "anatomy"
    if not is_current(anatomy):
        prepare_anatomy(anatomy)
    bids = out / "bids"
    first, last = (int(v) for v in args.subjects.split(":")) if args.subjects else (1, args.n)
    subjects = [f"p{i:02d}" for i in range(first, last + 1)]
    t1w = {s: bids / f"sub-{s}" / "anat" / f"sub-{s}_T1w.nii.gz" for s in subjects}
    # the full heads of every subject first (the positive control), then the defaced ones
    for subject in subjects:
        if not t1w[subject].exists():
            simulate_subject(args.kind, subject, args.seed, anatomy, bids, {"voxel_size": args.voxel_size})
        subject_records(subject, t1w[subject], out, ("none",))
    for subject in subjects:
        records += subject_records(subject, t1w[subject], out)
    if args.subjects:
        return
    if args.redescribe:
        redescribe(records)
    report(records, f"simulated {args.kind} cohort: n {args.n}, seed {args.seed}, {args.voxel_size} mm")


if __name__ == "__main__":
    main()
