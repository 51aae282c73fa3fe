"""Simulated raters: a validation of the rating analysis, never a finding about defacing.

Raters with known behaviour rate a study's blinded reports through the rating server's HTTP API
(the same requests the rating page sends), and :func:`defacebench.rating.analysis.analyse` must
recover what was set: a defacing bias per method where one is set, none where none is. This
checks the whole chain a real session goes through (each rater's order, the ratings file,
un-blinding with the key, the first-rating rule, the mixed model of Provins et al. 2025, PLoS
Biol 23:e3003149) against a known truth.

Each simulated rating is

    rating = clip(quality[subject] + offset[rater] + bias[method] + e,  1, 4),  e ~ N(0, noise_sd^2),

with subject qualities drawn uniformly from 2-3.5 and rater offsets from N(0, rater_sd^2); a
report shown twice is rated afresh (new noise). The simulated raters read the key, which real
raters never see: the simulation must know the truth to impose it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..quality import ratings as rating_stats
from .analysis import method_ratings, unblind
from .blinding import NONDEFACED, read_key
from .server import create_app

#: Spread of the simulated subjects' true quality (uniform) and of the raters' offsets and noise (SD).
QUALITY_RANGE = (2.0, 3.5)
RATER_SD = 0.2
NOISE_SD = 0.15


def synthetic_study(
    root: str | Path,
    n_subjects: int,
    methods: list[str],
    study_seed: int = 0,
    dataset: str = "synthetic",
    report_id=None,
) -> tuple[Path, dict]:
    """A reports folder (manifest only: simulated raters look at no image) and its key, for ``n_subjects`` x
    (nondefaced + ``methods``); returns (key path, (subject index, variant) -> report id).

    ``report_id(subject, variant)`` names the reports (default: random, as a study's are); fixed ids
    make a seeded simulation the same draw on every run, since each rater's order follows the ids.
    """
    from .. import io
    from .blinding import new_report_ids, write_key

    root = Path(root)
    variants = [NONDEFACED, *methods]
    ids = {
        (subject, variant): report_id(subject, variant) if report_id else new_report_ids(1)[0]
        for subject in range(n_subjects)
        for variant in variants
    }
    key_rows = [
        {
            "randomized_id": rid,
            "subject": f"s{subject:03d}",
            "variant": variant,
            "defaced": int(variant != NONDEFACED),
            "method": "" if variant == NONDEFACED else variant,
            "dataset": dataset,
            "image": "-",
        }
        for (subject, variant), rid in ids.items()
    ]
    reports = [{"id": rid, "views": ["axial"]} for rid in ids.values()]
    io.write_json(
        {"format": 1, "study_seed": study_seed, "repeats": 0, "reports": reports}, root / "reports" / "manifest.json"
    )
    return write_key(key_rows, root / "key.tsv"), ids


def simulate_ratings(
    reports_dir: str | Path,
    key_path: str | Path,
    ratings_path: str | Path,
    raters: list[str],
    bias: dict[str, float],
    seed: int = 0,
    noise_sd: float = NOISE_SD,
    rater_sd: float = RATER_SD,
) -> int:
    """Rate every report of every rater through the server's HTTP API; returns the number of ratings stored.

    ``bias``: method -> change of the rating when defaced by it (methods not named: 0).
    """
    key = {row["randomized_id"]: row for row in read_key(key_path)}
    rng = np.random.default_rng(seed)
    subjects = sorted({row["subject"] for row in key.values()})
    quality = dict(zip(subjects, rng.uniform(*QUALITY_RANGE, len(subjects))))
    stored = 0
    for rater in raters:
        offset = rng.normal(0.0, rater_sd)
        client = create_app(reports_dir, ratings_path, rater).test_client()
        state = client.get("/api/next").get_json()
        while not state["done"]:
            entry = key[state["report_id"]]
            shift = bias.get(entry["method"], 0.0) if entry["variant"] != NONDEFACED else 0.0
            value = float(np.clip(quality[entry["subject"]] + offset + shift + rng.normal(0.0, noise_sd), 1.0, 4.0))
            response = client.post(
                "/api/ratings",
                json={
                    "report_id": state["report_id"],
                    "position": state["position"],
                    "rating": round(value, 4),
                    "artifacts": [],
                    "confidence": 3.0,
                    "comments": "simulated rater",
                    "time_sec": 1.0,
                },
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"simulated rater {rater}: the server refused a rating: {response.get_json().get('error')}"
                )
            state = response.get_json()
            stored += 1
    return stored


def bias_recovered(
    ratings_path: str | Path, key_path: str | Path, bias: dict[str, float], z: float = 1.959964
) -> dict[str, dict]:
    """Per method: the set bias, the preregistered model's estimate with its Wald 95 % CI and p, and whether the CI covers it.

    The model is the one :func:`defacebench.rating.analysis.analyse` reports as ``all_raters``:
    :func:`~defacebench.quality.ratings.defacing_lrt` on each rater's first ratings.
    """
    table = pd.DataFrame(unblind(ratings_path, key_path)).astype(str)
    out = {}
    for method in sorted(set(table["method"]) - {""}):
        ratings, _ = method_ratings(table, method)
        result = rating_stats.defacing_lrt(rating_stats.first_ratings(ratings))
        truth = bias.get(method, 0.0)
        low, high = result["estimate"] - z * result["se"], result["estimate"] + z * result["se"]
        out[method] = {
            "set": truth,
            "estimate": result["estimate"],
            "ci_low": low,
            "ci_high": high,
            "p": result["p"],
            "covered": bool(low <= truth <= high),
        }
    return out
