"""The de Sitter et al. (2020) design at a size this machine can run, and its claims table.

Usage: python bench/bench_desitter2020.py [--n 20] [--voxel-size 1.5] [--cores 2] [--results DIR]
       python bench/bench_desitter2020.py --claims-only --results DIR   # tables of a finished run

Runs ``config/studies/desitter2020.yaml`` (three simulated cohorts with realistic heads, QuickShear,
FaceMasking and mri_deface, every arm's classic pipeline) with ``--n`` subjects per cohort instead of
the paper's 110 / 70 / 84, on a ``--voxel-size`` grid, and without the image-quality metrics (the
paper has none; they would double the run). Everything else is the study file's. Then prints each
published claim beside this run's value and verdict (:mod:`defacebench.report.claims`, the same check
the study report makes), and each cohort's agreement table, and writes ``claims.tsv`` into the
results folder. The wall time and the job count are printed as well.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from defacebench.report import claims
from defacebench.report.data import load_study

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "config" / "studies" / "desitter2020.yaml"


def bench_config(n: int, voxel_size: float, results: Path) -> dict:
    """The study file's config with ``n`` subjects per cohort, the grid, no IQMs, and ``results``."""
    config = yaml.safe_load(STUDY.read_text())
    for cohort in config["cohorts"]:
        cohort["n_subjects"] = n
    config["simulation"]["voxel_size"] = voxel_size
    config["quality"] = {"iqms": False}
    config["results"] = str(results)
    return config


def print_claims(results: Path, config: dict) -> pd.DataFrame:
    study = load_study(results, config)
    checked = claims.results_frame(claims.evaluate_claims(claims.load_claims(), study.cohorts, study.methods))
    checked.to_csv(results / "claims.tsv", sep="\t", index=False)
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(checked[["claim_id", "scope", "published", "obtained", "verdict"]].to_string(index=False))
        for cohort in study.cohorts:
            agreement = cohort.table("agreement")
            if not agreement.empty:
                print(f"\n{cohort.name}: agreement")
                print(agreement.to_string(index=False))
            failures = cohort.table("failures")
            if not failures.empty:
                print(f"\n{cohort.name}: failures")
                print(failures.to_string(index=False))
    return checked


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="subjects per cohort (the paper: 110 / 70 / 84)")
    parser.add_argument("--voxel-size", type=float, default=1.5, help="simulation grid, mm (the study file: 1.0)")
    parser.add_argument("--cores", default="2")
    parser.add_argument("--results", default=None)
    parser.add_argument("--claims-only", action="store_true", help="only the claims of a finished run in --results")
    args = parser.parse_args()
    results = Path(args.results or tempfile.mkdtemp(prefix="defacebench-desitter2020-")).resolve()
    config_path = results / "bench_config.yaml"
    if args.claims_only:
        print_claims(results, yaml.safe_load(config_path.read_text()))
        return
    results.mkdir(parents=True, exist_ok=True)
    config = bench_config(args.n, args.voxel_size, results)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--cores", args.cores, "--configfile", str(config_path)]
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (results / "snakemake.log").write_text(run.stdout + run.stderr)
    if run.returncode:
        print(run.stderr[-5000:])
        raise SystemExit(f"snakemake failed ({run.returncode}); log in {results / 'snakemake.log'}")
    jobs = sum(1 for _ in (results / "benchmarks").rglob("*.tsv"))
    print(f"n = {args.n} per cohort, {args.voxel_size} mm, {jobs} jobs, {wall / 60:.1f} min wall on {args.cores} cores")
    print(f"results: {results}\n")
    print_claims(results, config)


if __name__ == "__main__":
    main()
