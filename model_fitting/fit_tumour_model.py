"""Fit the tumour arm's decision forest on a simulated glioma cohort; export it as plain arrays.

Usage: python model_fitting/fit_tumour_model.py [--n 10] [--seed 9001] [--resolution 1] [--work /tmp/dfb-fit]
        [--trees 12] [--depth 12] [--brats-like 0] [--no-selection] [--out src/defacebench/data/tumour_forest.npz]
        [--postprocessing-only] [--set-selection]

Steps: simulate ``--n`` glioma subjects with the study's simulator (seeds seed..seed+n-1, not
study seeds); run the arm's own pre-processing (rigid registration to T1w, brain mask,
N4, intensity standardisation: ``--standardisation``, default ``wm-csf``) and feature maps; sample per subject up to ``--per-class``
voxels of each tumour label and a larger random set of normal brain (more near the tumour,
where the hard cases are); with ``--brats-like N`` also the first N fitting subjects as BraTS-like
scans (:func:`defacebench.analysis.pathology_training.brats_like`: skull-stripped with a sharp edge,
atlas-like 1 mm grid, bias field, arbitrary intensity scale, thick slices on every other one:
training-time augmentation towards real BraTS-style data, issue 25); fit a scikit-learn RandomForestClassifier (few shallow trees:
the shipped file must stay < 2 MB); choose the post-processing (posterior-smoothing width; all
tumour components or the largest only) that maximises the mean tumour-core Dice on the fitting
cohort, with the component selection (:func:`defacebench.analysis.tumour_features.select_tumour`,
its settings fixed in advance, not chosen here; ``--no-selection``: none); export with
:func:`defacebench.analysis.tumour_forest.export_forest` (no pickle).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np

from defacebench.analysis import tumour as T
from defacebench.analysis import tumour_features as tfeat
from defacebench.overlap import dice, truth_on_grid
from defacebench.analysis.pathology_training import (
    FIT_SEED,
    brats_like,
    cohort_source,
    training_cohort,
)
from defacebench.analysis.tumour_forest import export_forest, load_forest, predict_proba, write_forest

REPO = Path(__file__).resolve().parents[1]


def brats_like_variant(name, images, truth_img, truth, seed, i):
    """Fitting subject ``i`` as a BraTS-like scan (seeded by ``seed`` + 5000 + i; thick slices on odd ``i``)."""
    truth_dir = Path(truth["bids_root"]) / "derivatives" / "truth" / f"sub-{name}" / "anat"
    return brats_like(images, truth_img, truth_dir, name, np.random.default_rng(seed + 5000 + i), i % 2 == 1)


def subject_data(images: dict, truth_img, threads: int, standardisation: str = "wm-csf") -> dict:
    prep = T.prepare(images, threads=threads, standardisation=standardisation)
    labels = truth_on_grid(truth_img, images["T1w"])[prep["box"]]
    features = tfeat.tumour_features(prep["standardised"], prep["mask"], prep["zooms"])
    X = tfeat.feature_matrix(features, prep["mask"])
    return {"X": X, "y": labels[prep["mask"]].astype(np.int16), "prep": prep, "labels": labels}


def sample(subjects, rng, per_class: int, n_background: int):
    Xs, ys = [], []
    for s in subjects:
        y = s["y"]
        for k in np.unique(y):
            idx = np.flatnonzero(y == k)
            n = n_background if k == 0 else per_class
            if k == 0:
                # half near the tumour (within the bounding box of the labels, where the errors are), half anywhere
                mask = s["prep"]["mask"]
                tumour = np.zeros(mask.shape, bool)
                tumour[mask] = y > 0
                from scipy import ndimage

                near = ndimage.binary_dilation(tumour, iterations=8)[mask] & (y == 0)
                near_idx = np.flatnonzero(near)
                a = (
                    rng.choice(near_idx, min(len(near_idx), n // 2), replace=False)
                    if len(near_idx)
                    else np.empty(0, int)
                )
                b = rng.choice(idx, min(len(idx), n - len(a)), replace=False)
                idx = np.concatenate([a, b])
            else:
                idx = rng.choice(idx, min(len(idx), n), replace=False)
            Xs.append(s["X"][idx])
            ys.append(y[idx])
    return np.concatenate(Xs), np.concatenate(ys)


#: Post-processing settings tried on the fitting cohort: posterior smoothing width (mm) and
#: whether only the largest tumour component is kept (``--sigmas``, ``--largest``).
SIGMAS_MM = (0.0, 1.0, 1.5, 2.0)
LARGEST_ONLY = (False, True)


def postprocessing_grid(args) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    sigmas = tuple(float(x) for x in args.sigmas.split(","))
    return sigmas, {"both": LARGEST_ONLY, "yes": (True,), "no": (False,)}[args.largest]


def choose_postprocessing(subjects, model, metadata: dict, sigmas=SIGMAS_MM, largest_only=LARGEST_ONLY) -> dict:
    """Set ``metadata``'s post-processing to the one with the highest mean core Dice on the fitting cohort.

    Every setting's score goes to ``metadata["training"]["fitting_core_dice_by_postprocessing"]``;
    ties go to the earlier setting (less smoothing; all components kept). Returns the choice.
    """
    scores = {(sigma, largest): [] for sigma in sigmas for largest in largest_only}
    selection = metadata["postprocessing"].get("component_selection", False)
    for s in subjects:
        posteriors = T.forest_posteriors(s["prep"], model, s.get("X"))
        truth_core = np.isin(s["labels"], tfeat.CORE_LABELS)
        for sigma, largest in scores:
            labels = T.forest_labels(
                s["prep"],
                model,
                regularisation_sigma_mm=sigma,
                largest_component_only=largest,
                component_selection=selection,
                posteriors=posteriors,
            )
            scores[sigma, largest].append(dice(np.isin(labels, tfeat.CORE_LABELS), truth_core))
    means = {key: float(np.mean(v)) for key, v in scores.items()}
    sigma, largest = max(means, key=means.get)
    chosen = {"sigma_mm": sigma, "largest_component_only": largest}
    metadata["postprocessing"].update(chosen)
    metadata["training"]["fitting_core_dice_by_postprocessing"] = {
        f"sigma {k[0]}, {'largest component' if k[1] else 'all components'}": round(v, 4) for k, v in means.items()
    }
    print(
        f"fitting-cohort core Dice by post-processing: {metadata['training']['fitting_core_dice_by_postprocessing']}; "
        f"chose {chosen}"
    )
    return chosen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=FIT_SEED)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--work", default="/tmp/dfb-fit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trees", type=int, default=12)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=4000)
    parser.add_argument("--background", type=int, default=20000)
    parser.add_argument(
        "--source",
        default="auto",
        choices=("auto", "simulator", "phantom"),
        help="training data: the study's simulator, or the fallback phantoms",
    )
    parser.add_argument("--sim-settings", default="{}", help="JSON dict passed to simulate_subject")
    parser.add_argument(
        "--brats-like",
        type=int,
        default=0,
        help="also fit on BraTS-like variants of the first N fitting subjects (pathology_training.brats_like: "
        "skull-stripped, atlas-like grid, bias, intensity scale, thick slices on every other one)",
    )
    parser.add_argument("--standardisation", default="wm-csf", choices=T.STANDARDISATIONS)
    parser.add_argument(
        "--sigmas", default=",".join(map(str, SIGMAS_MM)), help="posterior-smoothing widths (mm) to choose from"
    )
    parser.add_argument(
        "--largest", default="both", choices=("both", "yes", "no"), help="largest tumour component only: try which"
    )
    parser.add_argument(
        "--no-selection", action="store_true", help="no component selection (tumour_features.select_tumour)"
    )
    parser.add_argument("--out", default=str(REPO / "src/defacebench/data/tumour_forest.npz"))
    parser.add_argument(
        "--postprocessing-only",
        action="store_true",
        help="keep the forest in --out; only choose its post-processing again on the fitting cohort",
    )
    parser.add_argument(
        "--set-selection",
        action="store_true",
        help="keep the forest in --out; only switch its component selection on (tumour_features.SELECTION_SETTINGS)",
    )
    args = parser.parse_args()
    if args.set_selection:
        return set_selection(args)
    if args.postprocessing_only:
        return rechoose_postprocessing(args)
    from sklearn import __version__ as sklearn_version
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(args.seed)
    settings = {"resolution_mm": args.resolution, **json.loads(args.sim_settings)}
    start = time.perf_counter()
    source = cohort_source(args.source)
    subjects = []
    for i, (name, images, truth_img, truth) in enumerate(
        training_cohort("glioma", args.n, args.seed, args.work, settings, source)
    ):
        subjects.append(subject_data(images, truth_img, args.threads, args.standardisation))
        if i < args.brats_like:
            variant = brats_like_variant(name, images, truth_img, truth, args.seed, i)
            subjects.append(subject_data(*variant, args.threads, args.standardisation))
    print(f"features in {time.perf_counter() - start:.0f} s")
    X, y = sample(subjects, rng, args.per_class, args.background)
    forest = RandomForestClassifier(
        n_estimators=args.trees,
        max_depth=args.depth,
        min_samples_leaf=10,
        max_features="sqrt",
        class_weight="balanced_subsample",
        random_state=args.seed,
        n_jobs=args.threads,
    ).fit(X, y)
    metadata = {
        "version": f"sim-{args.seed}-{date.today().isoformat()}",
        "description": "Decision forest of the defacebench tumour arm (re-implementation after BraTumIA, "
        "Porz et al. 2014); fitted by model_fitting/fit_tumour_model.py on simulated gliomas.",
        "feature_names": list(tfeat.FEATURE_NAMES),
        "standardisation": args.standardisation,
        "labels": {str(k): v for k, v in tfeat.LABELS.items()},
        "postprocessing": {
            "sigma_mm": 1.0,
            "min_tumour_ml": 0.5,
            "component_selection": False if args.no_selection else dict(tfeat.SELECTION_SETTINGS),
        },
        "training": {
            "source": source,
            "n_subjects": args.n,
            "n_brats_like_variants": args.brats_like,
            "simulator": "defacebench.simulate.simulate_subject (kind 'glioma')"
            if source == "simulator"
            else "defacebench.analysis.pathology_training.phantom_subject (kind 'glioma')",
            "seed": args.seed,
            "resolution_mm": args.resolution,
            "simulator_settings": settings,
            "n_samples": int(len(y)),
            "class_counts": {str(k): int((y == k).sum()) for k in np.unique(y)},
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "n_estimators": args.trees,
            "max_depth": args.depth,
            "min_samples_leaf": 10,
            "class_weight": "balanced_subsample",
            "scikit_learn": sklearn_version,
        },
    }
    out = Path(args.out)
    export_forest(forest, out, metadata)
    load_forest.cache_clear()
    model = load_forest(str(out))
    # check the export reproduces scikit-learn
    check = predict_proba(model, X[:5000])
    assert np.abs(check - forest.predict_proba(X[:5000])).max() < 2e-3, "exported forest disagrees with scikit-learn"
    choose_postprocessing(subjects, model, metadata, *postprocessing_grid(args))
    export_forest(forest, out, metadata)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - start:.0f} s")


def set_selection(args) -> None:
    """Switch the component selection of the forest in ``--out`` on, with its fixed settings (no refit).

    Its settings are not chosen on data (docs/methods.md); the version gets ``+selection``.
    """
    out = Path(args.out)
    model = load_forest(str(out))
    metadata = model["metadata"]
    metadata["postprocessing"]["component_selection"] = dict(tfeat.SELECTION_SETTINGS)
    if not metadata["version"].endswith("+selection"):
        metadata["version"] += "+selection"
    metadata["training"]["component_selection_set_on"] = date.today().isoformat()
    write_forest(model, out, metadata)
    print(f"component selection on in {out}: {metadata['postprocessing']}")


def rechoose_postprocessing(args) -> None:
    """Choose the post-processing of the forest in ``--out`` again, on its own fitting cohort."""
    start = time.perf_counter()
    out = Path(args.out)
    model = load_forest(str(out))
    metadata = model["metadata"]
    training = metadata["training"]
    source = training["source"]
    subjects = []
    for i, (name, images, truth_img, truth) in enumerate(
        training_cohort(
            "glioma", training["n_subjects"], training["seed"], args.work, training["simulator_settings"], source
        )
    ):
        cases = [(images, truth_img)]
        if i < training.get("n_brats_like_variants", 0):
            cases.append(brats_like_variant(name, images, truth_img, truth, training["seed"], i))
        for case_images, case_truth in cases:
            prep = T.prepare(case_images, threads=args.threads, standardisation=T.model_standardisation(model))
            subjects.append({"prep": prep, "labels": truth_on_grid(case_truth, case_images["T1w"])[prep["box"]]})
    choose_postprocessing(subjects, model, metadata, *postprocessing_grid(args))
    metadata["training"]["postprocessing_chosen_on"] = date.today().isoformat()
    write_forest(model, out, metadata)
    print(f"rewrote the metadata of {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
