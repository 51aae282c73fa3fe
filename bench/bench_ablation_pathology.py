"""Classic against modern pipelines of the lesion (WMLV) and tumour (GBV) arms on the same defaced images (issue 19).

    python bench/bench_ablation_pathology.py [--configfile config/studies/ablation-pathology.yaml]
        [--results DIR] [--out DIR] [--skip-study] [--jobs 1] [--pipelines classic modern]
        [--subjects 001 002 ...] [--add-records earlier/ablation_pathology_records.tsv ...]

1. Simulates the study's MS and glioma cohorts and defaces them (``snakemake --until deface``: no
   analysis; skipped with ``--skip-study`` when the images exist, e.g. those of another study's
   results folder given with ``--results``).
2. Analyses every image variant (the full image and each defacing method) of every subject with
   each pipeline: WMLV with :func:`defacebench.analysis.lesion.white_matter_lesion_volume` (FLAIR and
   T1w), GBV with :func:`defacebench.analysis.tumour.glioblastoma_volume` (four modalities), the
   study's ``analysis`` settings with ``pipeline`` set. ``classic`` = the whole-head route (whole-head
   affine, BET-like brain mask in the standard-space ROI; WMLV also priors placed by the whole-head
   affine and the bias field fitted on the whole head); ``modern`` = deepbet and brain-to-brain
   placement (docs/methods.md).
3. Writes ``<out>/ablation_pathology.tsv`` (and ``.md``): per outcome, pipeline and method, the
   failures (full, defaced), complete cases, the study's agreement statistics
   (``defacebench.tables.agreement_row``: mean difference, paired t, ICC(A,1), Bland-Altman), the
   mean % change, and the Dice of the label map against the simulated truth (full and defaced
   images) and of the defaced image's map against the full image's; ``ablation_pathology_records.tsv``
   holds every analysis (value or failure with stage and reason, Dice, CPU seconds).
   ``--add-records``: the records of earlier runs join the table, and their subjects (per outcome
   and pipeline) are not analysed again (a run in parts, or one resumed).

The pipeline whose rows move (failures, low ICC, a significant mean difference, Dice lost) is the one
defacing reaches; docs/ablation.md quotes the current figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("WMLV", "GBV")
PIPELINES = ("classic", "modern")


def _region(outcome: str, labels: np.ndarray) -> np.ndarray:
    """The voxels the outcome's value counts: lesions, or the tumour core (GBV)."""
    from defacebench.analysis.tumour_features import CORE_LABELS

    return np.isin(labels, CORE_LABELS) if outcome == "GBV" else labels > 0


def analyse_subject(task: dict) -> list[dict]:
    """One subject, one outcome, one pipeline: every image variant, one row each (value or failure)."""
    import nibabel as nib

    from defacebench.overlap import dice, truth_on_grid
    from defacebench.records import AnalysisFailure

    if task["outcome"] == "WMLV":
        from defacebench.analysis.lesion import white_matter_lesion_volume as arm

        grid_modality = "FLAIR"
    else:
        from defacebench.analysis.tumour import glioblastoma_volume as arm

        grid_modality = "T1w"
    truth_img = nib.load(task["truth_map"]) if task.get("truth_map") else None
    rows, regions = [], {}
    for variant, paths in task["variants"].items():
        row = {k: task[k] for k in ("cohort", "subject", "outcome", "pipeline", "truth_ml")}
        row["variant"] = variant
        if isinstance(paths, str):  # no image: defacing failed, with its reason
            rows.append({**row, "status": "failed", "stage": "deface", "reason": paths, "value": np.nan})
            continue
        images = {m: nib.load(p) for m, p in paths.items()}
        start = time.process_time()
        try:
            out = arm(images, threads=1, **task["settings"], pipeline=task["pipeline"])
        except AnalysisFailure as failure:
            rows.append(
                {
                    **row,
                    "status": "failed",
                    "stage": failure.stage,
                    "reason": failure.reason,
                    "value": np.nan,
                    "cpu_s": round(time.process_time() - start, 1),
                }
            )
            continue
        # both on the RAS-canonical grid of the image the arm measured on (truth_on_grid gives that grid)
        labels = np.asarray(nib.as_closest_canonical(out["segmentation"]).dataobj)
        region = _region(task["outcome"], labels)
        regions[variant] = region
        row.update(
            status="ok",
            value=out["value"],
            whole_tumour_ml=out.get("whole_tumour_ml", np.nan),
            recorded_pipeline=out.get("pipeline"),
            brain_mask=out.get("brain_mask"),
            cpu_s=round(time.process_time() - start, 1),
        )
        if truth_img is not None:
            truth = np.asarray(truth_on_grid(truth_img, nib.as_closest_canonical(images[grid_modality])))
            row["dice_vs_truth"] = round(dice(region, _region(task["outcome"], truth)), 4)
        rows.append(row)
    for row in rows:
        if row["status"] == "ok" and "none" in regions and row["variant"] != "none":
            row["dice_vs_full"] = round(dice(regions[row["variant"]], regions["none"]), 4)
    return rows


def tasks(config: dict, results: Path, pipelines, subjects=None) -> list[dict]:
    """One task per WMLV/GBV cohort subject, outcome and pipeline, with every variant's image paths."""
    from defacebench.cohorts import MODALITY_FILENAME, TRUTH_KEYS

    methods = ["none"] + list(config["methods"])
    analysis = config.get("analysis", {})
    out = []
    for cohort in config["cohorts"]:
        for outcome in [o for o in OUTCOMES if o in cohort["outcomes"]]:
            modalities = ("FLAIR", "T1w") if outcome == "WMLV" else ("T1w", "ceT1w", "T2w", "FLAIR")
            root = results / "cohorts" / cohort["name"]
            settings = {k: v for k, v in analysis.get(outcome, {}).items() if k not in ("pipeline", "near_zero_ml")}
            for subject_dir in sorted(root.glob("sub-*")):
                subject = subject_dir.name[4:]
                if subjects and subject not in subjects:
                    continue
                names = {m: f"{subject_dir.name}_{MODALITY_FILENAME[m]}" for m in modalities}
                variants: dict = {}
                for method in methods:
                    if method == "none":
                        folder = subject_dir / "anat"
                    else:
                        folder = results / "defaced" / cohort["name"] / method / subject_dir.name / "anat"
                    paths = {m: folder / name for m, name in names.items()}
                    if all(p.exists() for p in paths.values()):
                        variants[method] = {m: str(p) for m, p in paths.items()}
                    else:
                        record = (
                            results / "records" / cohort["name"] / "deface" / f"{subject_dir.name}_method-{method}.json"
                        )
                        why = json.loads(record.read_text()).get("message") if record.exists() else None
                        variants[method] = why or "no defaced image"
                truth_dir = root / "derivatives" / "truth" / subject_dir.name / "anat"
                truth_json = truth_dir / f"{subject_dir.name}_truth.json"
                key = TRUTH_KEYS[outcome]
                desc = "desc-lesion_mask" if outcome == "WMLV" else "desc-tumour_dseg"
                truth_map = truth_dir / f"{subject_dir.name}_{desc}.nii.gz"
                for pipeline in pipelines:
                    out.append(
                        {
                            "cohort": cohort["name"],
                            "subject": subject,
                            "outcome": outcome,
                            "pipeline": pipeline,
                            "settings": settings,
                            "variants": variants,
                            "truth_ml": json.loads(truth_json.read_text()).get(key) if truth_json.exists() else None,
                            "truth_map": str(truth_map) if truth_map.exists() else None,
                        }
                    )
    return out


def ablation_table(records: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per outcome, pipeline and method: failures, complete-case agreement, % change, Dice."""
    from defacebench.tables import agreement_row

    rows = []
    for (outcome, pipeline), df in records.groupby(["outcome", "pipeline"], sort=True):
        wide = df.pivot(index="subject", columns="variant", values="value")
        ok = wide.notna()
        truth = df.groupby("subject")["truth_ml"].first()
        for method in methods:
            if method not in wide:
                continue
            complete = ok["none"] & ok[method]  # paired: this method against the full image
            subjects = wide.index[complete]
            full, defaced = wide.loc[subjects, "none"], wide.loc[subjects, method]
            row = {
                "outcome": outcome,
                "pipeline": pipeline,
                "method": method,
                "n_subjects": int(len(wide)),
                "failed_full": int((~ok["none"]).sum()),
                "failed_defaced": int((~ok[method]).sum()),
            }
            row.update(agreement_row(full.to_numpy(), defaced.to_numpy(), truth.loc[subjects].to_numpy(dtype=float)))
            # % change over subjects with a full-image volume above 0.1 ml (a % of nothing is not a change)
            sizable = full > 0.1
            row["mean_pct_change"] = float(np.mean((defaced[sizable] - full[sizable]) / full[sizable] * 100))
            by = df.set_index(["subject", "variant"])
            for name, variant in (("full", "none"), ("defaced", method)):
                if "dice_vs_truth" in by:
                    row[f"dice_vs_truth_{name}"] = float(by.xs(variant, level="variant")["dice_vs_truth"].mean())
            if "dice_vs_full" in by:
                row["dice_vs_full"] = float(by.xs(method, level="variant")["dice_vs_full"].mean())
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config/studies/ablation-pathology.yaml"))
    parser.add_argument("--results", default=None, help="the study's results folder (default: the config's)")
    parser.add_argument("--out", default=None, help="where the tables go (default: <results>/tables)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--subjects", nargs="+", default=None, help="only these subject labels")
    parser.add_argument("--add-records", nargs="+", default=[], help="records TSVs of earlier runs to include")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.configfile).read_text())
    results = Path(args.results or REPO / config["results"])
    if not args.skip_study:
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.jobs), "--configfile", args.configfile]
        cmd += ["--until", "deface"]  # simulation and defacing only: the analyses run below
        if args.results:
            cmd += ["--config", f"results={results}"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        print(f"simulation and defacing: {(time.perf_counter() - start) / 60:.1f} min wall")
    todo = tasks(config, results, args.pipelines, args.subjects)
    earlier = [pd.read_csv(path, sep="\t", dtype={"subject": str}) for path in args.add_records]
    done = {tuple(key) for frame in earlier for key in frame[["outcome", "pipeline", "subject"]].to_numpy()}
    todo = [t for t in todo if (t["outcome"], t["pipeline"], t["subject"]) not in done]
    start = time.perf_counter()
    with Pool(args.jobs) as pool:
        rows = [row for task_rows in pool.imap_unordered(analyse_subject, todo) for row in task_rows]
    n_images = sum(len(t["variants"]) for t in todo)
    print(f"analyses: {n_images} (images x pipelines), {(time.perf_counter() - start) / 60:.1f} min wall")
    records = pd.concat([*earlier, pd.DataFrame(rows)], ignore_index=True)
    records = records.sort_values(["outcome", "pipeline", "subject", "variant"])
    table = ablation_table(records, list(config["methods"]))
    out = Path(args.out) if args.out else results / "tables"
    out.mkdir(parents=True, exist_ok=True)
    records.to_csv(out / "ablation_pathology_records.tsv", sep="\t", index=False)
    table.to_csv(out / "ablation_pathology.tsv", sep="\t", index=False, float_format="%.6g")
    shown = table[
        [
            "outcome",
            "pipeline",
            "method",
            "failed_full",
            "failed_defaced",
            "n_complete",
            "mean_diff",
            "mean_pct_change",
            "t_p",
            "icc_a1",
            *[c for c in ("dice_vs_truth_full", "dice_vs_truth_defaced", "dice_vs_full") if c in table],
        ]
    ]
    (out / "ablation_pathology.md").write_text(shown.to_markdown(index=False, floatfmt=".4g") + "\n")
    cpu = records.groupby(["outcome", "pipeline"])["cpu_s"].agg(["mean", "min", "max"]).round(1)
    print("CPU s per image:\n" + cpu.to_string())
    failed = records[records["status"] == "failed"]
    if len(failed):
        print("failures:\n" + failed[["outcome", "pipeline", "subject", "variant", "stage", "reason"]].to_string())
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"tables in {out}")


if __name__ == "__main__":
    main()
