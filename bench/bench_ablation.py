"""Which component of the classic NBV chain carries the effect of defacing (issue 19's ablation).

    python bench/bench_ablation.py [--configfile config/studies/ablation.yaml] [--results DIR]
                                   [--jobs 2] [--skip-study]

1. Runs the study (``snakemake --configfile ...``; skipped with ``--skip-study`` when it has run):
   simulation, defacing, and the study's own NBV arm (its ``analysis.NBV`` settings; the ablation
   config runs the classic pipeline), tables and report.
2. Re-analyses every T1w variant (full image and each defacing method) with the SIENAX-like arm
   under brain extraction {bet-like (inside the standard-space ROI), deepbet} x scaling
   {whole-head affine, intracranial-outline fit}: ``classic`` = bet-like + whole-head, ``modern``
   = deepbet + intracranial-outline, and the two crossings. Within one image, the whole-head
   affine, the bet-like mask and deepbet's mask are computed once and shared by the combinations
   that use them (the same functions, memoised by the image's voxels and affine).
3. Writes ``<results>/tables/ablation_NBV.tsv`` (and ``.md``): per cohort, combination and method, the
   failures (full, defaced), complete cases, the study's agreement statistics
   (``defacebench.tables.agreement_row``: ICC(A,1), mean difference, paired t, Bland-Altman) and
   the error against the simulated truth; and ``ablation_NBV_records.tsv`` with every value.

The combination whose row shows the effect (failures, low ICC, a significant mean difference) is
the component that carries it; docs/ablation.md quotes the current figures.
"""

from __future__ import annotations

import argparse
import hashlib
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

COMBINATIONS = {
    "classic": {"brain_backend": "bet-like", "scaling": "whole-head"},
    "bet-like + intracranial-outline": {"brain_backend": "bet-like", "scaling": "intracranial-outline"},
    "deepbet + whole-head": {"brain_backend": "deepbet", "scaling": "whole-head"},
    "modern": {"brain_backend": "deepbet", "scaling": "intracranial-outline"},
}


def _key(img, *extra) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(np.asarray(img.dataobj)).tobytes())
    digest.update(np.asarray(img.affine, float).tobytes())
    digest.update(repr(extra).encode())
    return digest.hexdigest()


_MEMORIES: list[dict] = []


def _memoise(function, key_of):
    """``function`` computed once per key (results and AnalysisFailures both remembered until the next image)."""
    from defacebench.records import AnalysisFailure

    memory: dict = {}
    _MEMORIES.append(memory)

    def wrapper(*args, **kwargs):
        key = key_of(*args, **kwargs)
        if key not in memory:
            try:
                memory[key] = ("ok", function(*args, **kwargs))
            except AnalysisFailure as failure:
                memory[key] = ("failed", failure)
        kind, value = memory[key]
        if kind == "failed":
            raise value
        return value

    return wrapper


def _install_memos() -> None:
    """Memoise the shared steps once per worker process; each image starts with empty memories."""
    if _MEMORIES:
        for memory in _MEMORIES:
            memory.clear()
        return
    from defacebench import brain
    from defacebench.analysis import head_registration

    head_registration.whole_head_affine = _memoise(head_registration.whole_head_affine, lambda img, **kw: _key(img))
    head_registration.bet_like_in_standard_space_roi = _memoise(
        head_registration.bet_like_in_standard_space_roi, lambda img, to_mni: _key(img, np.round(to_mni, 6).tolist())
    )
    brain.extract_brain = _memoise(brain.extract_brain, lambda img, backend="deepbet", **kw: _key(img, backend))


def analyse_image(task: dict) -> list[dict]:
    """Every chosen combination on one T1w variant: one row each (value or failure)."""
    import nibabel as nib

    from defacebench.analysis.nbv import normalised_brain_volume
    from defacebench.records import AnalysisFailure

    _install_memos()
    rows = []
    base = {k: task[k] for k in ("cohort", "subject", "variant", "truth_ml")}
    intracranial = None
    if task.get("truth_dseg") and task["variant"] == "none":
        from defacebench.simulate.anatomy import CSF, GM, WM

        intracranial = np.isin(np.asarray(nib.load(task["truth_dseg"]).dataobj), (CSF, GM, WM))
    if task["path"] is None:
        return [
            {**base, "combination": c, "status": "failed", "stage": "deface", "reason": task["why"], "value": np.nan}
            for c in task["combinations"]
        ]
    img = nib.load(task["path"])
    for name in task["combinations"]:
        settings = COMBINATIONS[name]
        start = time.process_time()
        try:
            result = normalised_brain_volume({"T1w": img}, threads=1, **settings)
            rows.append(
                {
                    **base,
                    "combination": name,
                    "status": "ok",
                    "value": result["value"],
                    "brain_ml": result["brain_ml"],
                    "vscaling": result["vscaling"],
                    "brain_mask_ml": result["brain_mask_ml"],
                    "cpu_s": round(time.process_time() - start, 1),
                }
            )
            if intracranial is not None:
                # the arm's mask is its tissue labels' support (CSF, GM, WM inside the brain mask)
                mask = np.asarray(result["segmentation"].dataobj) > 0
                rows[-1]["mask_dice_vs_true_intracranial"] = round(
                    float(2 * (mask & intracranial).sum() / (mask.sum() + intracranial.sum())), 4
                )
        except AnalysisFailure as failure:
            rows.append(
                {**base, "combination": name, "status": "failed", "stage": failure.stage, "reason": failure.reason}
            )
            rows[-1]["value"] = np.nan
    return rows


def tasks(config: dict, results: Path) -> list[dict]:
    """One task per NBV cohort subject and variant (full image and each method), simulated or BIDS."""
    methods = ["none"] + list(config["methods"])
    out = []
    for cohort in config["cohorts"]:
        if "NBV" not in cohort["outcomes"]:
            continue
        simulated = cohort.get("source", "simulated") == "simulated"
        root = results / "cohorts" / cohort["name"] if simulated else (REPO / cohort["bids_root"]).resolve()
        wanted = (cohort.get("filters") or {}).get("subject")
        for subject_dir in sorted(root.glob("sub-*")):
            subject = subject_dir.name[4:]
            if wanted and subject not in wanted:
                continue
            t1w = sorted((subject_dir / "anat").glob("*_T1w.nii*"))[0]
            truth_file = root / "derivatives/truth" / subject_dir.name / "anat" / f"{subject_dir.name}_truth.json"
            truth = json.loads(truth_file.read_text()).get("nbv_ml") if truth_file.exists() else None
            dseg = truth_file.with_name(f"{subject_dir.name}_dseg.nii.gz")
            for method in methods:
                path, why = t1w, ""
                if method != "none":
                    path = results / "defaced" / cohort["name"] / method / subject_dir.name / "anat" / t1w.name
                    if not path.exists():
                        record = results / "records" / cohort["name"] / "deface" / f"sub-{subject}_method-{method}.json"
                        why = json.loads(record.read_text()).get("reason", "defacing failed") if record.exists() else ""
                        path = None
                out.append(
                    {
                        "cohort": cohort["name"],
                        "subject": subject,
                        "variant": method,
                        "path": str(path) if path else None,
                        "why": why or "no defaced image",
                        "truth_ml": truth,
                        "truth_dseg": str(dseg) if dseg.exists() else None,
                    }
                )
    return out


def ablation_table(records: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    from defacebench.tables import agreement_row

    rows = []
    for (cohort, combination), df in records.groupby(["cohort", "combination"], sort=False, observed=True):
        wide = df.pivot(index="subject", columns="variant", values="value")
        ok = wide.notna()
        complete = ok.all(axis=1)
        truth = df.groupby("subject")["truth_ml"].first()
        for method in methods:
            row = {
                "cohort": cohort,
                "combination": combination,
                "method": method,
                "failed_full": int((~ok["none"]).sum()),
                "failed_defaced": int((~ok[method]).sum()),
                "n_subjects": int(len(wide)),
            }
            subjects = wide.index[complete]
            row.update(
                agreement_row(
                    wide.loc[subjects, "none"].to_numpy(),
                    wide.loc[subjects, method].to_numpy(),
                    truth.loc[subjects].to_numpy(dtype=float),
                )
            )
            row["mean_pct_change"] = float(
                np.mean((wide.loc[subjects, method] - wide.loc[subjects, "none"]) / wide.loc[subjects, "none"] * 100)
            )
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config/studies/ablation.yaml"))
    parser.add_argument("--results", default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument(
        "--combinations",
        nargs="+",
        choices=list(COMBINATIONS),
        default=list(COMBINATIONS),
        help="which cells to run (modern -> deepbet + whole-head -> classic changes one component at a time)",
    )
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.configfile).read_text())
    results = Path(args.results or REPO / config["results"])
    if not args.skip_study:
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.jobs), "--configfile", args.configfile]
        if args.results:
            cmd += ["--config", f"results={results}"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        print(f"study: {(time.perf_counter() - start) / 60:.1f} min wall")
    todo = [{**task, "combinations": args.combinations} for task in tasks(config, results)]
    start = time.perf_counter()
    with Pool(args.jobs) as pool:
        rows = [row for image_rows in pool.imap_unordered(analyse_image, todo) for row in image_rows]
    print(
        f"ablation: {len(todo)} images x {len(args.combinations)} combinations, {(time.perf_counter() - start) / 60:.1f} min wall"
    )
    records = pd.DataFrame(rows)
    # the table's order: cohorts as configured, combinations as COMBINATIONS lists them
    records["cohort"] = pd.Categorical(records["cohort"], [c["name"] for c in config["cohorts"]])
    records["combination"] = pd.Categorical(records["combination"], [c for c in COMBINATIONS if c in args.combinations])
    records = records.sort_values(["cohort", "combination", "subject", "variant"])
    table = ablation_table(records, list(config["methods"]))
    out = results / "tables"
    out.mkdir(parents=True, exist_ok=True)
    records.to_csv(out / "ablation_NBV_records.tsv", sep="\t", index=False)
    table.to_csv(out / "ablation_NBV.tsv", sep="\t", index=False, float_format="%.6g")
    shown = table[
        [
            "cohort",
            "combination",
            "method",
            "failed_full",
            "failed_defaced",
            "n_complete",
            "mean_pct_change",
            "mean_diff",
            "t_p",
            "icc_a1",
            "icc_a1_ci_low",
            "icc_a1_ci_high",
            "mape_full_vs_truth_pct",
        ]
    ]
    (out / "ablation_NBV.md").write_text(shown.to_markdown(index=False, floatfmt=".4g") + "\n")
    if "mask_dice_vs_true_intracranial" in records:
        full = records[records["variant"] == "none"].groupby(["cohort", "combination"], observed=True)
        print(full[["mask_dice_vs_true_intracranial", "cpu_s"]].agg(["mean", "min", "max"]).round(3).to_string())
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"tables in {out}")


if __name__ == "__main__":
    main()
