"""Wall time of a whole study on this machine (default: the default demo study on 2 cores).

Usage: python bench/bench_study.py [--cores 2] [--configfile FILE] [--results DIR]
Prints the wall time, the job counts, and the slowest rules (from Snakemake's benchmark files).
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cores", default="2")
    parser.add_argument("--configfile")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()
    results = Path(args.results or tempfile.mkdtemp(prefix="defacebench-bench-"))
    cmd = [sys.executable, "-m", "snakemake", "--cores", args.cores, "--config", f"results={results}"]
    if args.configfile:
        cmd[4:4] = ["--configfile", args.configfile]
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(run.stdout[-3000:])
    if run.returncode:
        print(run.stderr[-5000:])
        raise SystemExit(f"snakemake failed ({run.returncode})")
    rows = []
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        bench = pd.read_csv(tsv, sep="\t")
        rows.append(
            {
                "rule": tsv.relative_to(results / "benchmarks").parts[0],
                "s": bench["s"].iloc[0],
                "max_rss_mb": bench["max_rss"].iloc[0],
            }
        )
    table = pd.DataFrame(rows)
    by_rule = table.groupby("rule").agg(
        jobs=("s", "size"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        max_rss_mb=("max_rss_mb", "max"),
        total_s=("s", "sum"),
    )
    print(by_rule.sort_values("total_s", ascending=False).round(1).to_string())
    print(f"\nwhole study: {wall / 60:.1f} min wall on {args.cores} cores; results in {results}")


if __name__ == "__main__":
    main()
