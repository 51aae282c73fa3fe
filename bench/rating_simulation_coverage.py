"""Coverage of the rating analysis on simulated raters (a validation of the analysis, not a finding about defacing).

Run: python bench/rating_simulation_coverage.py [replications] [subjects] [raters]
Each replication: a fresh set of report identifiers for subjects x (none, biased, neutral), the
raters of defacebench.rating.simulated (bias +0.10 for "biased", none for "neutral") rate every
report through the rating server's API, and the preregistered model (each rater's first ratings,
rating ~ defaced + (1|subject) + (1|rater)) is fitted per method. Prints how often the Wald 95 % CI
covers the set bias, how often p < 0.05 (power for +0.10, false-positive rate for 0), and the mean
estimate. Files go to a temporary folder (in memory where /dev/shm exists).
"""

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from defacebench.rating import simulated

BIAS = {"biased": 0.10}


def replication(root: Path, seed: int, subjects: int, raters: int) -> dict:
    key, _ = simulated.synthetic_study(root, subjects, ["biased", "neutral"], study_seed=seed, dataset="simulated")
    names = [f"r{n}" for n in range(raters)]
    simulated.simulate_ratings(root / "reports", key, root / "ratings.tsv", names, BIAS, seed=seed)
    return simulated.bias_recovered(root / "ratings.tsv", key, BIAS)


def main():
    replications, subjects, raters = (int(a) for a in (sys.argv[1:] + ["100", "16", "4"][len(sys.argv) - 1 :])[:3])
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results = {"biased": [], "neutral": []}
    for seed in range(replications):
        with tempfile.TemporaryDirectory(dir=base) as folder:
            for method, found in replication(Path(folder), seed, subjects, raters).items():
                results[method].append(found)
    print(
        f"{replications} replications, {subjects} subjects x 3 variants, {raters} raters, "
        f"noise SD {simulated.NOISE_SD}, rater SD {simulated.RATER_SD}"
    )
    for method, rows in results.items():
        estimates = np.array([r["estimate"] for r in rows])
        covered = np.mean([r["covered"] for r in rows])
        significant = np.mean([r["p"] < 0.05 for r in rows])
        print(
            f"{method}: set {BIAS.get(method, 0.0):+.2f}, mean estimate {estimates.mean():+.4f} "
            f"(SD {estimates.std(ddof=1):.4f}), 95 % CI coverage {covered:.1%}, p < 0.05 in {significant:.1%}"
        )


if __name__ == "__main__":
    main()
