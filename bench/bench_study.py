"""Wall time of a whole study on this machine (default: the default demo study on 2 cores).

Usage: python bench/bench_study.py [--cores 2] [--configfile FILE] [--results DIR]
Prints the wall time, the job counts, and the slowest rules (from Snakemake's benchmark files): wall
seconds and CPU seconds per job (CPU: user + system of the job's processes, which other work on a
shared machine inflates far less than the wall time), and the study's total CPU time over the cores
(what the wall time would be on idle cores that were always busy).
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
        cmd[5:5] = ["--configfile", args.configfile]  # after "--cores N"
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
        parts = tsv.relative_to(results / "benchmarks").parts
        rows.append(
            {
                # analyse/<cohort>/<outcome>/...: one row per outcome
                "rule": f"{parts[0]} {parts[2]}" if parts[0] == "analyse" else parts[0],
                "s": bench["s"].iloc[0],
                "cpu_s": bench["cpu_time"].iloc[0],
                "max_rss_mb": bench["max_rss"].iloc[0],
            }
        )
    table = pd.DataFrame(rows)
    by_rule = table.groupby("rule").agg(
        jobs=("s", "size"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        mean_cpu_s=("cpu_s", "mean"),
        max_rss_mb=("max_rss_mb", "max"),
        total_s=("s", "sum"),
        total_cpu_s=("cpu_s", "sum"),
    )
    print(by_rule.sort_values("total_s", ascending=False).round(1).to_string())
    cpu = table["cpu_s"].sum()
    print(
        f"\nwhole study: {wall / 60:.1f} min wall on {args.cores} cores; jobs' CPU {cpu / 60:.1f} min in all "
        f"({cpu / 60 / float(args.cores):.1f} min over {args.cores} cores); peak RSS of a job "
        f"{table['max_rss_mb'].max():.0f} MB; results in {results}"
    )


if __name__ == "__main__":
    main()
