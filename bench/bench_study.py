"""Wall time of a whole study on this machine (default: the default demo study on 2 cores).

Usage: python bench/bench_study.py [--cores 2] [--configfile FILE] [--results DIR]
Prints the wall time, the job counts, and the slowest rules: wall seconds and peak RSS per job from
Snakemake's benchmark files, CPU seconds per job from the last line of its log (user + system of the
job's process, imports included: defacebench.logs.job_log), and the CPU time of Snakemake and all
its jobs (resource.RUSAGE_CHILDREN). On a machine shared with other work the wall times are
inflated and the CPU times much less so; CPU / cores is what the wall time would be on cores kept
busy by this study alone.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from defacebench.logs import RESOURCES_LINE

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
    start, tree = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Snakemake and every job it ran (each waited for): user + system seconds
    tree_cpu = after.ru_utime + after.ru_stime - tree.ru_utime - tree.ru_stime
    print(run.stdout[-3000:])
    if run.returncode:
        print(run.stderr[-5000:])
        raise SystemExit(f"snakemake failed ({run.returncode})")
    walls = pd.DataFrame(
        [
            {"rule": rule_key(tsv.relative_to(results / "benchmarks").parts), **_benchmark(tsv)}
            for tsv in (results / "benchmarks").rglob("*.tsv")
        ]
    )
    cpus = pd.DataFrame(
        [
            {"rule": rule_key(log.relative_to(results / "logs").parts), "cpu_s": cpu}
            for log in (results / "logs").rglob("*.log")
            if (cpu := _log_cpu(log)) is not None
        ]
    )
    by_rule = walls.groupby("rule").agg(
        jobs=("s", "size"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        max_rss_mb=("max_rss_mb", "max"),
        total_s=("s", "sum"),
    )
    if not cpus.empty:
        by_rule = by_rule.join(cpus.groupby("rule")["cpu_s"].agg(mean_cpu_s="mean", total_cpu_s="sum"))
    print(by_rule.sort_values("total_s", ascending=False).round(1).to_string())
    jobs_cpu = cpus["cpu_s"].sum() if not cpus.empty else float("nan")
    print(
        f"\nwhole study: {wall / 60:.1f} min wall on {args.cores} cores; CPU {tree_cpu / 60:.1f} min "
        f"(Snakemake and its jobs; {tree_cpu / 60 / float(args.cores):.1f} min over {args.cores} cores), "
        f"of which the jobs' own {jobs_cpu / 60:.1f} min; peak RSS of a job {walls['max_rss_mb'].max():.0f} MB; "
        f"results in {results}"
    )


def rule_key(parts: tuple[str, ...]) -> str:
    """The rule of a benchmark or log file, from its path under ``benchmarks/`` or ``logs/`` (NBV/WMLV/GBV apart)."""
    top = parts[0].removesuffix(".tsv").removesuffix(".log")
    if top == "analyse":
        return f"analyse {parts[2]}"
    if top == "deface" and parts[-1].endswith("_preparation.log"):
        return "prepare_defacing"
    if top == "simulate":
        return "simulate_dataset" if parts[-1].startswith("dataset.") else "simulate_subject"
    return top


def _benchmark(tsv: Path) -> dict:
    bench = pd.read_csv(tsv, sep="\t")
    return {"s": bench["s"].iloc[0], "max_rss_mb": bench["max_rss"].iloc[0]}


def _log_cpu(log: Path) -> float | None:
    """A job's CPU seconds from the last line of its log (defacebench.logs.job_log), None without one."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith(RESOURCES_LINE):
            return float(line.split("cpu_s=")[1].split()[0])
    return None


if __name__ == "__main__":
    main()
