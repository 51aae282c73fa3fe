"""Speed of the aggregation step (failure and agreement tables, figure) on a large synthetic cohort.

Usage: python bench/bench_tables.py [--subjects 200] [--methods 4] [--failure-rate 0.05] [--seed 0]

Writes record JSON files for subjects x (full + methods) x 4 outcomes into a temporary folder,
then times load_records, failure_table, agreement_table, write_tables, plot_agreement and
summary_text, and prints the process's peak RSS (resource.getrusage). Also checks, on the same
data, that the pingouin and closed-form ICC engines agree. Target: well under the 5 min /
1 GB the cohort_tables rule reserves.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from defacebench import stats, tables
from defacebench.records import Record

OUTCOMES = {"NBV": (1500.0, 80.0), "WMLV": (8.0, 4.0), "GBV": (30.0, 12.0), "WTV": (70.0, 25.0)}


def write_cohort(folder: Path, subjects: int, methods: int, failure_rate: float, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    variants = ["none"] + [f"method{m}" for m in range(1, methods + 1)]
    paths = []
    for s in range(subjects):
        truths = {o: max(0.5, rng.normal(mean, sd)) for o, (mean, sd) in OUTCOMES.items()}
        for v, variant in enumerate(variants):
            records = []
            for outcome, truth in truths.items():
                record = Record(
                    cohort="bench",
                    subject=f"{s:04d}",
                    variant=variant,
                    outcome=outcome,
                    unit="ml",
                    backend="bench",
                    truth=truth,
                    tool_versions={"numpy": np.__version__},
                )
                if rng.random() < failure_rate * (1 + v):
                    record.status, record.failed_stage, record.message = "failed", "segmentation", "bench"
                else:
                    record.value = truth * (1 + rng.normal(0.01 * v, 0.02))
                records.append(record.to_dict())
            path = folder / f"sub-{s:04d}_variant-{variant}.json"
            path.write_text(json.dumps(records))
            paths.append(path)
    return paths


def timed(label: str, fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    print(f"{label:<18} {time.perf_counter() - start:7.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--methods", type=int, default=4)
    parser.add_argument("--failure-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_cohort(folder, args.subjects, args.methods, args.failure_rate, args.seed)
        print(f"{len(paths)} record files, {len(paths) * len(OUTCOMES)} records")
        df = timed("load_records", tables.load_records, paths)
        failures = timed("failure_table", tables.failure_table, df, "bench")
        agreement = timed("agreement_table", tables.agreement_table, df, "bench")
        timed("write_tables", tables.write_tables, df, folder / "tables", "bench")
        timed("plot_agreement", tables.plot_agreement, df, folder / "tables" / "bench_agreement.png", "bench")
        timed("summary_text", tables.summary_text, df)
    print(
        f"failures: {int(failures.failed_defaced.sum())} defaced, {int(failures.failed_full.sum())} full (summed over rows)"
    )
    print(f"complete cases per outcome: {agreement.groupby('outcome').n_complete.first().to_dict()}")
    worst = 0.0
    for outcome in OUTCOMES:
        for method in agreement.method.unique():
            _, full, defaced, _ = tables.paired_values(df, outcome, method, "bench")
            a = stats.icc(full, defaced, engine="pingouin")
            b = stats.icc(full, defaced, engine="closed-form")
            worst = max(worst, *(abs(a[k] - b[k]) for k in ("icc", "ci_low", "ci_high")))
    print(f"max |pingouin - closed form| over ICC and CI bounds: {worst:.2e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
