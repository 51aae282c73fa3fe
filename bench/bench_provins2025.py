"""Wall time of the whole provins2025 study (Provins et al. 2025 from its published tables).

Usage: python bench/bench_provins2025.py [--cores 2] [--engines] [--keep DIR]

1. Runs ``snakemake --cores N --forceall --configfile config/studies/provins2025.yaml`` with the
   results in a temporary folder (or --keep DIR) and prints the wall time and each rule's time
   from its benchmark file (cpu: the job's CPU seconds; on a shared machine the wall time is
   mostly waiting for a core). Target: <= 2 min on 2 cores.
2. With --engines: fits the preregistered pair of mixed models on the published ratings with
   both engines (defacebench.quality.lmm's exact dense ML and statsmodels' MixedLM) and prints
   their times, the defacing estimate, chi2 and p, and the largest difference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RATINGS = REPO.parent / "shared" / "data" / "provins2025" / "S1_Data.tsv"


def run_study(cores: int, results: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(cores),
        "--forceall",
        "--configfile",
        "config/studies/provins2025.yaml",
        "--config",
        f"results={results}",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(result.stdout + result.stderr)
    print(f"provins2025 study, --cores {cores}: {wall:.1f} s wall (target <= 120 s)")
    # every rule of the run (the study's own and any the default target adds, e.g. the study report)
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        row = pd.read_csv(path, sep="\t").iloc[0]
        name = str(path.relative_to(results / "benchmarks").with_suffix(""))
        print(f"  {name:<32} {row['s']:6.1f} s  cpu {row['cpu_time']:6.1f} s  max RSS {row['max_rss']:6.0f} MB")
    return wall


def compare_engines() -> None:
    from defacebench.quality import ratings

    first = ratings.first_ratings(ratings.load_ratings(RATINGS))
    results = {}
    for engine in ("dense-ml", "statsmodels"):
        start = time.perf_counter()
        results[engine] = ratings.defacing_lrt(first, engine)
        elapsed = time.perf_counter() - start
        r = results[engine]
        print(
            f"{engine:<12} {elapsed:6.2f} s for both fits: estimate {r['estimate']:.6f}, chi2 {r['chi2']:.6f}, "
            f"p {r['p']:.6f}, llf {r['llf']:.6f}"
        )
    keys = ("estimate", "chi2", "p", "llf", "var_subject", "var_rater", "var_residual")
    diff = max(abs(results["dense-ml"][k] - results["statsmodels"][k]) for k in keys)
    print(f"largest absolute difference over {', '.join(keys)}: {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--engines", action="store_true", help="also time dense ML against statsmodels")
    parser.add_argument("--keep", type=Path, help="results folder to keep (default: a temporary one)")
    args = parser.parse_args()
    if not RATINGS.exists():
        sys.exit(f"the published data are not at {RATINGS.parent}")
    if args.keep:
        run_study(args.cores, args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory() as folder:
            run_study(args.cores, Path(folder))
    if args.engines:
        compare_engines()


if __name__ == "__main__":
    main()
