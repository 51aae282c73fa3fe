"""How long Snakemake takes to build the DAG of a large study: a dry run of a 1,000-subject study.

Generates a study config from config/config.yaml with its simulated cohorts scaled to N subjects
in all (default 1,000, split evenly over the cohorts, each keeping its kind, outcomes and methods),
then times `snakemake -n --configfile <it>` (a fresh results folder, so every job is needed) and
reports wall time, peak RSS of the Snakemake process and the job counts by rule.

Usage: python bench/bench_dag.py [--subjects 1000] [--repeats 1] [--quiet]
Target: <= 30 s on 2 cores. Nothing is written under the repository except Snakemake's .snakemake/.
"""

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def study_config(n_subjects: int, results: Path) -> dict:
    """The default study with its cohorts grown to n_subjects simulated subjects in all."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cohorts = [c for c in config["cohorts"] if c["source"] == "simulated"]
    share, extra = divmod(n_subjects, len(cohorts))
    config["cohorts"] = [dict(c, n_subjects=share + (i < extra)) for i, c in enumerate(cohorts)]
    config["results"] = str(results)
    return config


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> count (plus 'total')."""
    counts = {}
    for line in output.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z_][\w]*)\s+(\d+)\s*", line)
        if match:
            counts[match[1]] = int(match[2])
    return counts


def dry_run(config_path: Path, quiet: bool) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--configfile", str(config_path), "--workflow-profile", "none"]
    if quiet:
        cmd.append("--quiet")
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(f"dry run failed ({run.returncode}):\n{run.stderr[-5000:]}")
    return wall, run.stdout + run.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quiet", action="store_true", help="pass --quiet (no per-job listing)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="defacebench-dag-") as tmp:
        config = study_config(args.subjects, Path(tmp) / "results")
        config_path = Path(tmp) / "study.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        walls = []
        for _ in range(args.repeats):
            wall, output = dry_run(config_path, args.quiet)
            walls.append(wall)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = job_counts(output)
    cohorts = ", ".join(f"{c['name']} ({c['kind']}) {c['n_subjects']}" for c in config["cohorts"])
    print(f"study: {args.subjects} simulated subjects: {cohorts}; methods {config['methods']}")
    if counts:  # --quiet leaves out Snakemake's job stats table
        print("jobs by rule: " + ", ".join(f"{rule} {n}" for rule, n in counts.items() if rule != "total"))
        print(f"total jobs: {counts.get('total')}")
    print(
        f"dry run (snakemake -n{' --quiet' if args.quiet else ''}): "
        + ", ".join(f"{w:.1f} s" for w in walls)
        + f" wall; peak RSS {peak_mb:.0f} MB"
    )
    print(f"target <= 30 s: {'met' if max(walls) <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
