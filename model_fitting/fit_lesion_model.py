"""Fit the lpa-like lesion model's coefficients on a simulated MS cohort.

Usage: python model_fitting/fit_lesion_model.py [--model flair|t1w] [--n 12] [--seed 9001] [--resolution 1]
        [--work /tmp/dfb-fit] [--out src/defacebench/data/lesion_lpa_coefficients.json]

``--model flair`` (default) fits the FLAIR-alone model on the cohort's FLAIRs (the T1w left out, as
when a user has none); ``--model t1w`` fits the FLAIR-and-T1w model
(``lesion_lpa_t1w_coefficients.json``, features ``T1W_FEATURE_NAMES``).

Simulated subjects and their feature maps are kept under ``--work`` (``lesion-features/``) and
reused by a later run: use a fresh ``--work`` after changing the simulator or the features.

Steps: simulate ``--n`` MS subjects with the study's simulator (seeds seed..seed+n-1, not
study seeds); run the lpa-like pre-processing (brain mask, N4, registered MNI priors, tissue
statistics, belief map) and compute its feature maps; sample every lesion voxel and a random
subset of normal-brain voxels (weighted by the inverse sampling fraction, so the fitted
intercept reflects the true lesion prevalence); fit an L2-penalised logistic regression
(scikit-learn); then choose the post-processing settings (smoothing, growth; then the
half-maximum boundary, off or on with its z floor and steps) that maximise the mean Dice on the
fitting cohort at LST's fixed threshold (p > 0.5, clusters <= 0.015 ml dropped); last, on
the thick-slice subjects only, the thick-slice intercept shift and border (``postprocess`` step 6).
A tenth of a cohort has thick slices (3 of 10 at the defaults): too few to choose two settings, so
that stage adds ``--thick-n`` subjects simulated with thick-slice FLAIRs only (seeds from
``--thick-seed``; neither study nor validation seeds). Writes the JSON parameter file documented in src/defacebench/data/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from datetime import date
from pathlib import Path

import numpy as np

from defacebench.analysis import lesion as L
from defacebench.analysis import lesion_features as lf
from defacebench.overlap import dice, truth_on_grid
from defacebench.analysis.pathology_training import (
    FIT_SEED,
    cohort_source,
    training_cohort,
)
from defacebench.arrays import uncrop
from defacebench.io import voxel_volume_ml

REPO = Path(__file__).resolve().parents[1]


def model_images(images: dict, model: str) -> dict:
    """The images a model is fitted on: FLAIR alone, or FLAIR and T1w."""
    return {k: v for k, v in images.items() if k == "FLAIR" or (model == "t1w" and k == "T1w")}


def subject_features(
    images: dict, truth_img, threads: int, cache: Path | None = None, names: tuple = lf.FEATURE_NAMES
) -> dict:
    """The arm's feature maps and the truth of one subject; kept in ``cache`` (npz) when given.

    The cache holds the masked feature values and their names (a cache of other features is
    recomputed): delete it (or use a new ``--work``) after changing the simulator or the pre-processing.
    """
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if "feature_names" not in stored or tuple(stored["feature_names"].tolist()) != names:
                cache.unlink()  # written for other features
                return subject_features(images, truth_img, threads, cache, names)
            mask, lesion = stored["mask"], stored["lesion_all"]
            features = {}
            for k, name in enumerate(names):
                full = np.zeros(mask.shape, np.float32)
                full[mask] = stored["values"][:, k]
                features[name] = full
            return {
                "features": features,
                "mask": mask,
                "lesion": lesion & mask,
                "lesion_all": lesion,
                "zooms": tuple(stored["zooms"]),
                "voxel_ml": float(stored["voxel_ml"]),
            }
    result = L.lpa_like_features(images, threads=threads)
    result["features"] = {
        name: uncrop(values, result["box"], result["mask"].shape) for name, values in result["box_features"].items()
    }
    lesion = truth_on_grid(truth_img, images["FLAIR"]) > 0
    out = {
        "features": result["features"],
        "mask": result["mask"],
        "lesion": lesion & result["mask"],
        "lesion_all": lesion,
        "zooms": result["zooms"],
        "voxel_ml": voxel_volume_ml(result["canonical"]),
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache,
            mask=out["mask"],
            lesion_all=lesion,
            zooms=np.asarray(out["zooms"]),
            voxel_ml=out["voxel_ml"],
            values=lf.feature_matrix(out["features"], out["mask"], names),
            feature_names=np.asarray(names),
        )
    return out


def sample(subjects: list[dict], rng, names: tuple, negatives_per_positive: int = 20, min_negatives: int = 20000):
    X, y, w = [], [], []
    for s in subjects:
        Xs = lf.feature_matrix(s["features"], s["mask"], names)
        ys = s["lesion"][s["mask"]]
        pos = np.flatnonzero(ys)
        neg = np.flatnonzero(~ys)
        n_neg = min(len(neg), max(min_negatives, negatives_per_positive * len(pos)))
        # half of the negatives among bright voxels (the hard cases), half uniform
        bright = neg[Xs[neg, lf.FEATURE_NAMES.index("z_gm")] > 1.0]
        n_bright = min(len(bright), n_neg // 2)
        chosen_bright = rng.choice(bright, n_bright, replace=False) if n_bright else np.empty(0, int)
        chosen_uniform = rng.choice(neg, n_neg - n_bright, replace=False)
        X += [Xs[pos], Xs[chosen_bright], Xs[chosen_uniform]]
        y += [np.ones(len(pos)), np.zeros(n_bright), np.zeros(len(chosen_uniform))]
        n_bright_all = len(bright)
        w += [
            np.ones(len(pos)),
            np.full(n_bright, n_bright_all / max(n_bright, 1)),
            np.full(len(chosen_uniform), (len(neg) - n_bright_all) / max(len(chosen_uniform), 1)),
        ]
        # the uniform sample also covers bright voxels: its weight is approximate, which is fine for a
        # logistic fit whose threshold is tuned afterwards by the Dice search below
    return np.concatenate(X), np.concatenate(y), np.concatenate(w)


def extra_thick_subjects(args, settings: dict, source: str, cache: Path, names) -> list[dict]:
    """The ``--thick-n`` extra subjects simulated with thick-slice FLAIRs only (none for the phantoms)."""
    if source != "simulator" or args.thick_n <= 0:
        return []
    difficulty = {**settings.get("difficulty", {}), "thick_slice_flair_probability": 1.0}
    return [
        subject_features(
            model_images(images, args.model),
            truth_img,
            args.threads,
            cache / f"{source}-{args.model}-{args.thick_seed}-{args.resolution}-thick-{name}.npz",
            names,
        )
        for name, images, truth_img, _ in training_cohort(
            "ms", args.thick_n, args.thick_seed, args.work, {**settings, "difficulty": difficulty}, source
        )
    ]


def fit_logistic(X, y, w, C: float = 1.0) -> dict:
    from sklearn.linear_model import LogisticRegression

    mean = X.mean(axis=0)
    scale = X.std(axis=0) + 1e-6
    model = LogisticRegression(C=C, max_iter=2000)
    model.fit((X - mean) / scale, y, sample_weight=w / w.mean())
    return {
        "feature_mean": mean.tolist(),
        "feature_scale": scale.tolist(),
        "coefficients": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
    }


def evaluate(subjects, params) -> tuple[float, list[float]]:
    dices = []
    for s in subjects:
        p = lf.lesion_probability(s["features"], s["mask"], s["zooms"], params)["probability"]
        seg, _ = lf.lesion_clusters(p, lf.LST_THRESHOLD, lf.LST_MIN_CLUSTER_ML, s["voxel_ml"])
        dices.append(dice(seg, s["lesion_all"]))
    return float(np.mean(dices)), dices


#: Load adaptation grid (stage 4): slopes, and intercept offsets at the fitting cohort's typical load
#: (the geometric mean of its first-pass volumes), turned into the reference volume at which the
#: first pass is kept: reference = typical x exp(-offset / slope).
LOAD_SLOPES = (0.0, 0.25, 0.5, 0.75, 1.0)
LOAD_OFFSETS = (-0.5, 0.0, 0.5, 1.0)


def fit_load_adaptation(subjects, params) -> tuple[dict, dict]:
    """Stage 4: the load adaptation (:func:`lf.load_adaptation_shift`), then its thick-slice settings.

    First on every fitting subject, the extra thick-slice ones too (they widen the range of loads);
    then, on the thick-slice subjects alone, settings of their own for thick grids
    (``thick_slice``, :func:`lf.grid_load_adaptation`; slope 0 is among them). Returns the
    parameters and the Dice of each grid point.
    """
    params, scores = _fit_load_adaptation(subjects, params)
    thick = [s for s in subjects if lf.is_thick(s["zooms"])]
    if thick:
        joint = params["load_adaptation"]
        trial, thick_scores = _fit_load_adaptation(thick, {**params, "load_adaptation": {**joint, "thick_slice": None}})
        params = {
            **params,
            "load_adaptation": {
                **joint,
                "thick_slice": {k: trial["load_adaptation"][k] for k in ("slope", "reference_volume_ml")},
            },
        }
        scores["thick_slice"] = thick_scores
        scores["dice_mean_with_thick_slice_settings"] = round(evaluate(subjects, params)[0], 4)
    return params, scores


def _fit_load_adaptation(subjects, params) -> tuple[dict, dict]:
    """The grid search of :func:`fit_load_adaptation` on ``subjects``, the adaptation's other keys kept."""
    kept = {k: v for k, v in (params.get("load_adaptation") or {}).items() if k not in ("slope", "reference_volume_ml")}
    base = {k: v for k, v in params.items() if k != "load_adaptation"}
    first = []
    for s in subjects:
        p = lf.lesion_probability(s["features"], s["mask"], s["zooms"], base)["probability"]
        seg, _ = lf.lesion_clusters(p, lf.LST_THRESHOLD, lf.LST_MIN_CLUSTER_ML, s["voxel_ml"])
        first.append(max(float(seg.sum() * s["voxel_ml"]), 0.05))
    typical = float(np.exp(np.mean(np.log(first))))
    scores, best = {}, None
    for slope, offset in itertools.product(LOAD_SLOPES, LOAD_OFFSETS):
        if slope == 0.0 and offset != 0.0:
            continue
        adaptation = {
            "min_volume_ml": 0.05,
            "max_shift": 3.0,
            **kept,
            "slope": slope,
            "reference_volume_ml": typical * float(np.exp(-offset / slope)) if slope else typical,
        }
        trial = {**base, "load_adaptation": adaptation}
        score, dices = evaluate(subjects, trial)
        scores[f"slope {slope}, offset {offset}"] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, dices, trial)
    return best[2], {
        "dice_by_slope_and_offset": scores,
        "typical_first_pass_ml": round(typical, 3),
        "first_pass_ml": [round(v, 3) for v in first],
        "dice": [round(d, 4) for d in best[1]],
        "dice_mean": round(best[0], 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="flair", choices=("flair", "t1w"), help="FLAIR alone, or FLAIR and a co-registered T1w"
    )
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=FIT_SEED)
    parser.add_argument(
        "--thick-n",
        type=int,
        default=8,
        help="extra subjects with thick-slice FLAIRs for the thick-slice stage (simulator only)",
    )
    parser.add_argument("--thick-seed", type=int, default=9201)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--work", default="/tmp/dfb-fit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--source",
        default="auto",
        choices=("auto", "simulator", "phantom"),
        help="training data: the study's simulator, or the fallback phantoms",
    )
    parser.add_argument("--sim-settings", default="{}", help="JSON dict passed to simulate_subject")
    parser.add_argument("--out", default=None, help="default: the shipped file of --model")
    parser.add_argument(
        "--load-adaptation-only",
        action="store_true",
        help="keep the coefficients and post-processing of the existing --out file and refit stage 4 "
        "(the load adaptation) only, on the same (cached) subjects",
    )
    args = parser.parse_args()
    out_path = Path(
        args.out
        or REPO / "src/defacebench/data" / (L.T1W_COEFFICIENTS_FILE if args.model == "t1w" else L.COEFFICIENTS_FILE)
    )
    names = lf.T1W_FEATURE_NAMES if args.model == "t1w" else lf.FEATURE_NAMES
    rng = np.random.default_rng(args.seed)
    settings = {"resolution_mm": args.resolution, **json.loads(args.sim_settings)}
    start = time.perf_counter()
    source = cohort_source(args.source)
    cache = Path(args.work) / "lesion-features"
    subjects = [
        subject_features(
            model_images(images, args.model),
            truth_img,
            args.threads,
            cache / f"{source}-{args.model}-{args.seed}-{args.resolution}-{name}.npz",
            names,
        )
        for name, images, truth_img, _ in training_cohort("ms", args.n, args.seed, args.work, settings, source)
    ]
    print(f"features in {time.perf_counter() - start:.0f} s")
    if args.load_adaptation_only:
        existing = json.loads(out_path.read_text())
        thick_subjects = extra_thick_subjects(args, settings, source, cache, names)
        adapted, existing["training"]["load_adaptation"] = fit_load_adaptation(subjects + thick_subjects, existing)
        existing["load_adaptation"] = adapted["load_adaptation"]
        existing["training"]["load_adaptation"]["refitted"] = f"stage 4 only, {date.today().isoformat()}"
        out_path.write_text(json.dumps(existing, indent=1) + "\n")
        print(f"load adaptation {existing['load_adaptation']}: {existing['training']['load_adaptation']}")
        print(f"wrote {out_path} in {time.perf_counter() - start:.0f} s")
        return
    X, y, w = sample(subjects, rng, names)
    best = None
    for C in (1.0,):
        params = {"feature_names": list(names), **fit_logistic(X, y, w, C), "postprocessing": {}}
        # the shift range reaches -3: with faint, small simulated lesions among FLAIR-bright normal
        # structures the best operating point lies well below the prevalence-weighted intercept
        for smooth, grow, shift in itertools.product(
            (0.0,), (1.5, 2.5, 99.0), (-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 1.0)
        ):
            trial = {
                **params,
                "intercept": params["intercept"] + shift,
                "postprocessing": {
                    "threshold": 0.5,
                    "smooth_sigma_mm": smooth,
                    "grow_belief": grow,
                    "grow_min_probability": 0.1,
                    "grow_iterations": 2,
                },
            }
            score, dices = evaluate(subjects, trial)
            if best is None or score > best[0]:
                best = (score, dices, trial, C, shift)
    score, dices, params, C, shift = best
    print(f"fitting-cohort Dice {score:.3f} (C={C}, intercept shift {shift}, post {params['postprocessing']})")
    # second stage, for the model just chosen: the half-maximum boundary (off, or on near-isotropic grids)
    half_max_scores = {"off": round(score, 4)}
    for z_min, iterations in itertools.product((2.0, 2.5, 3.0), (1, 2, 3)):
        trial = {
            **params,
            "postprocessing": {
                **params["postprocessing"],
                "half_maximum_z_min": z_min,
                "half_maximum_iterations": iterations,
            },
        }
        trial_score, trial_dices = evaluate(subjects, trial)
        half_max_scores[f"z_min {z_min}, {iterations} steps"] = round(trial_score, 4)
        if trial_score > score:
            score, dices, params = trial_score, trial_dices, trial
    print(f"fitting-cohort Dice by half-maximum boundary: {half_max_scores}; chose {params['postprocessing']}")
    # third stage, thick slices only (steps 1-5 and the fine grids are left as chosen): the intercept
    # shift and the border at a fraction of the local peak (postprocess step 6)
    thick = [i for i, s in enumerate(subjects) if lf.is_thick(s["zooms"])]
    thick_subjects = [subjects[i] for i in thick]
    extra_thick = extra_thick_subjects(args, settings, source, cache, names)
    thick_subjects += extra_thick
    thick_scores = {}
    if thick_subjects:
        best_thick = None
        for thick_shift, fraction in itertools.product((0.0, -0.5, -1.0, -1.5, -2.0), (0.0, 0.5, 0.6, 0.7)):
            trial = {
                **params,
                "thick_slice_intercept_shift": thick_shift,
                "postprocessing": {**params["postprocessing"], "thick_slice_peak_fraction": fraction},
            }
            trial_score, trial_dices = evaluate(thick_subjects, trial)
            thick_scores[f"shift {thick_shift}, fraction {fraction}"] = round(trial_score, 4)
            if best_thick is None or trial_score > best_thick[0]:
                best_thick = (trial_score, trial_dices, trial)
        params = best_thick[2]
        for i, d in zip(thick, best_thick[1]):  # the extra thick subjects follow the cohort's own
            dices[i] = d
        score = float(np.mean(dices))
        print(
            f"thick-slice Dice by shift and border: {thick_scores}; chose shift "
            f"{params['thick_slice_intercept_shift']}, fraction {params['postprocessing']['thick_slice_peak_fraction']}"
        )
    # fourth stage, every fitting subject: the intercept's adaptation to the brain's lesion load
    params, load_scores = fit_load_adaptation(subjects + extra_thick, params)
    print(f"load adaptation: {load_scores}; chose {params['load_adaptation']}")
    import sklearn

    out = {
        "version": f"sim-{args.seed}-{date.today().isoformat()}",
        "description": f"Coefficients of the defacebench lpa-like lesion model, {'FLAIR and T1w' if args.model == 't1w' else 'FLAIR alone'} (re-implementation after "
        "Schmidt 2017, LST lpa); NOT LST's coefficients. Fitted by model_fitting/fit_lesion_model.py.",
        "feature_names": list(names),
        **{k: params[k] for k in ("feature_mean", "feature_scale", "coefficients", "intercept")},
        "thick_slice_intercept_shift": float(params.get("thick_slice_intercept_shift", 0.0)),
        "postprocessing": params["postprocessing"],
        "load_adaptation": params["load_adaptation"],
        "training": {
            "source": source,
            "simulator": "defacebench.simulate.simulate_subject (kind 'ms')"
            if source == "simulator"
            else "defacebench.analysis.pathology_training.phantom_subject (kind 'ms')",
            "n_subjects": args.n,
            "seed": args.seed,
            "resolution_mm": args.resolution,
            "simulator_settings": settings,
            "n_samples": int(len(y)),
            "n_lesion_samples": int(y.sum()),
            "regularisation_C": C,
            "intercept_shift": shift,
            "fitting_dice_mean": score,
            "fitting_dice_by_half_maximum_boundary": half_max_scores,
            "thick_slice_dice_by_shift_and_border": thick_scores,
            "model": args.model,
            "thick_slice_subjects": {
                "from_cohort": len(thick),
                "extra": len(thick_subjects) - len(thick),
                "extra_seed": args.thick_seed,
            },
            "fitting_dice": [round(d, 4) for d in dices],
            "load_adaptation": load_scores,
            "scikit_learn": sklearn.__version__,
        },
    }
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {out_path} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
