"""The tumour arm on simulated, BraTS-like and real glioma scans, with its plausibility flags (issue 25).

    python bench/bench_tumour_real_like.py [--n 5] [--seed 9101] [--work /tmp/dfb-fit] [--model NAME=PATH]
                                            [--threads 1] [--skip-sim] [--skip-brats] [--skip-real]
                                            [--toggle-selection] [--toggle-hyperintensity]
                                            [--no-confounders]

Generalisation to real scans is what matters here, and the real scans that failed are not shared,
so this measures the arm on data that look like them without tuning on any of it:

1. ``simulated``: the validation cohort (seed 9101, 1 mm; the fit used seed 9001) as simulated:
   core and whole-tumour Dice, core-volume ICC(A,1) against the truth (the figures of
   docs/validation.md: ``bench/bench_lesion_tumour.py --arms glioma --n 5`` runs the same subjects).
2. ``brats-like``: the same subjects preprocessed as BraTS distributes scans (Menze et al. 2015;
   Bakas et al. 2017): skull-stripped with a sharp edge (the true brain, ventricles and sulcal CSF
   included), resampled (linear) onto a 1 mm 240 x 240 x 155 LPS grid turned by up to 8 degrees,
   a multiplicative bias field of up to +-25 % per modality, each modality rescaled to an arbitrary
   int16 range; on odd subjects T1w, T2w and FLAIR were acquired with 5 mm slices (blurred along
   one axis, as many TCGA scans in BraTS were), and what real skull-stripped scans show that the
   simulated heads do not (``pathology_training.REAL_SCAN_CONFOUNDERS``: enhancing dura and falx,
   a bright FLAIR rim, T1w and ceT1w of different contrast; ``--no-confounders``: without).
   Seeded per subject (``--seed`` + 7000 + i).
3. ``real``: sub-gbm7294 of the shared real sample (its reference labels: core = 1, whole = 1 + 2)
   as it is, and stressed (robustness, not tuning): every modality rescaled (x0.07 to x9) and
   offset, a +-30 % bias field, and 5 mm slices on T1w, T2w, FLAIR.

Each case: core / whole Dice, volumes, the plausibility checks' measures and reasons
(:mod:`defacebench.analysis.tumour_plausibility`, shape and enhancement: a flagged case is a failed
record in a study),
and whether the whole tumour overlaps the truth at all (found). ``--model NAME=PATH`` (repeatable):
forest files to compare on the same pre-processing of each case (e.g. the one shipped before a
change); ``--toggle-selection``: each also with its component selection switched;
``--toggle-hyperintensity``: each also checked against the FLAIR and T2w hyperintensity
(:func:`defacebench.analysis.tumour.checked_labels`), the row saying whose tumour was measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from defacebench.analysis import tumour as T
from defacebench.analysis import tumour_features as tfeat
from defacebench.analysis.pathology_training import (
    VALIDATION_SEED,
    bias_field,
    brats_like,
    thick_slices,
    training_cohort,
)
from defacebench.analysis import tumour_hyperintensity as thyper
from defacebench.analysis.tumour_plausibility import enhancement_plausibility, tumour_plausibility
from defacebench.arrays import uncrop
from defacebench.io import voxel_volume_ml
from defacebench.overlap import dice, truth_on_grid
from defacebench.stats import icc

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-bids"


def stressed(images: dict, kind: str, rng) -> dict:
    out = {}
    axis = int(rng.integers(3))
    for m, img in images.items():
        data = np.asarray(img.dataobj, np.float32)
        mask = data != 0
        if kind == "scaled":
            data = data * np.exp(rng.uniform(np.log(0.07), np.log(9.0))) + rng.uniform(-50, 200) * mask
        elif kind == "bias":
            data = data * bias_field(data.shape, rng, 0.3)
        elif kind == "thick" and m != "ceT1w":
            data = thick_slices(data, axis) * mask
        out[m] = nib.Nifti1Image(data.astype(np.float32), img.affine)
    return out


def run_case(name, images, truth_img, args, models, core_truth_labels=tfeat.CORE_LABELS) -> dict:
    """Every model (and post-processing) in ``models`` on one case, from one pre-processing; rows by model."""
    start = time.process_time()
    prep = T.prepare(images, threads=args.threads)
    prep_cpu = time.process_time() - start
    brain = uncrop(prep["mask"], prep["box"], prep["shape"]).astype(bool)
    zooms = prep["canonical"].header.get_zooms()[:3]
    voxel_ml = voxel_volume_ml(prep["canonical"])
    truth = truth_on_grid(truth_img, images["T1w"])
    core_truth = np.isin(truth, core_truth_labels)
    rows = {}
    posteriors = {}
    enhancement = {}  # the enhancement evidence, by intensity standardisation
    regions = {}  # the hyperintense region, by intensity standardisation
    preps = {}  # by intensity standardisation: each model reads the intensities it was fitted on
    for label, (model_key, model, overrides) in models.items():
        method = T.model_standardisation(model)
        if method not in preps:
            preps[method] = T.standardise(prep, method)
        if model_key not in posteriors:
            posteriors[model_key] = T.forest_posteriors(preps[method], model)
        t0 = time.process_time()
        settings = dict(overrides)
        hyperintensity = settings.pop("hyperintensity", False)
        labels, check = T.checked_labels(
            preps[method], model, hyperintensity, posteriors=posteriors[model_key], **settings
        )
        labels = uncrop(labels, prep["box"], prep["shape"])
        if hyperintensity and method not in regions:  # the region alone, as a segmentation of the whole tumour
            p = preps[method]
            region, _ = thyper.hyperintense_region(
                p["standardised"], p["mask"], p["zooms"], hyperintensity if isinstance(hyperintensity, dict) else None
            )
            regions[method] = uncrop(region, prep["box"], prep["shape"]).astype(bool)
        volumes = T.label_volumes(labels, voxel_ml)
        whole = labels > 0
        measures, reasons = tumour_plausibility(whole, brain | whole, zooms)
        if method not in enhancement:
            p = preps[method]
            enhancement[method] = uncrop(
                thyper.enhancement_evidence(p["standardised"], p["mask"], p["zooms"]), prep["box"], prep["shape"]
            )
        enhancing, enhancement_reasons = enhancement_plausibility(labels, enhancement[method], zooms)
        reasons += enhancement_reasons
        row = {
            "case": name,
            "model": label,
            "core_dice": dice(np.isin(labels, tfeat.CORE_LABELS), core_truth),
            "whole_dice": dice(whole, truth > 0),
            "core_ml": volumes["value"],
            "core_truth_ml": float(core_truth.sum() * voxel_ml),
            "whole_ml": volumes["whole_tumour_ml"],
            "whole_truth_ml": float((truth > 0).sum() * voxel_ml),
            "found": bool((whole & (truth > 0)).any()),
            "flagged": "; ".join(reasons),
            "rim": measures.get("rim_surface_fraction", 0.0),
            "midline": measures.get("midline_band_fraction", 0.0),
            "enhancing_signal_ml": enhancing["enhancing_signal_ml"],
            "source": check["source"] if hyperintensity else "",
            "hyper_ml": check.get("hyperintense_ml", 0.0),
            "region_whole_dice": dice(regions[method], truth > 0) if hyperintensity else "",
            "overlap": check.get("forest_overlap", 0.0),
            "dropped_ml": check.get("dropped_ml", 0.0),
            "cpu_s": prep_cpu + time.process_time() - t0,
        }
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        print("  " + " ".join(f"{k}={v}" for k, v in shown.items() if v != ""), flush=True)
        rows[label] = row
    return rows


def summary(label: str, rows: list[dict], with_icc: bool = False) -> None:
    if not rows:
        return
    core = np.array([r["core_dice"] for r in rows])
    whole = np.array([r["whole_dice"] for r in rows])
    text = (
        f"== {label} (n={len(rows)}): core Dice {core.mean():.3f} (min {core.min():.3f}), whole Dice "
        f"{whole.mean():.3f} (min {whole.min():.3f}), tumour found {sum(r['found'] for r in rows)}, "
        f"flagged {sum(bool(r['flagged']) for r in rows)}"
    )
    if with_icc and len(rows) > 2:
        agreement = icc(np.array([r["core_ml"] for r in rows]), np.array([r["core_truth_ml"] for r in rows]))
        text += f", core volume ICC(A,1) {agreement['icc']:.3f}"
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED)
    parser.add_argument("--work", default="/tmp/dfb-fit")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="NAME=forest file, repeatable (default: the shipped forest); each as its metadata says",
    )
    parser.add_argument(
        "--toggle-selection",
        action="store_true",
        help="also run each model with its component selection switched (on when off, off when on)",
    )
    parser.add_argument(
        "--toggle-hyperintensity",
        action="store_true",
        help="also run each model with the FLAIR/T2w hyperintensity check (tumour.checked_labels); "
        "without this flag every model runs without it",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--skip-brats", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument(
        "--no-confounders",
        action="store_true",
        help="BraTS-like variants without pathology_training.REAL_SCAN_CONFOUNDERS",
    )
    args = parser.parse_args()
    models = {}
    for spec in args.model or ["shipped"]:
        name, _, path = spec.partition("=")
        model = T.load_forest(path or None)
        models[name] = (name, model, {})
        if args.toggle_selection:
            on = bool(T.postprocessing(model)["component_selection"])
            toggled = {"component_selection": False if on else dict(tfeat.SELECTION_SETTINGS)}
            models[f"{name}{'-' if on else '+'}selection"] = (name, model, toggled)
        if args.toggle_hyperintensity:
            models[f"{name}+hyperintensity"] = (name, model, {"hyperintensity": True})
        print(f"model {name}: {model['metadata'].get('version')} ({path or 'shipped'}), {T.postprocessing(model)}")
    sim_rows, brats_rows, real_rows = [], [], []
    if not (args.skip_sim and args.skip_brats):
        print("1-2. simulated validation subjects, as simulated and BraTS-like")
        for i, (name, images, truth_img, truth) in enumerate(
            training_cohort("glioma", args.n, args.seed, args.work, {"resolution_mm": 1.0}, "simulator")
        ):
            if not args.skip_sim:
                sim_rows.append(run_case(f"{name} simulated", images, truth_img, args, models))
            if not args.skip_brats:
                truth_dir = Path(truth["bids_root"]) / "derivatives" / "truth" / f"sub-{name}" / "anat"
                rng = np.random.default_rng(args.seed + 7000 + i)
                thick = i % 2 == 1
                variant, variant_truth = brats_like(
                    images, truth_img, truth_dir, name, rng, thick, confounders=not args.no_confounders
                )
                brats_rows.append(
                    run_case(f"{name} brats-like{' thick' if thick else ''}", variant, variant_truth, args, models)
                )
    if not args.skip_real and REAL.exists():
        print("3. real sub-gbm7294 (reference: core = label 1, whole = 1 + 2), as it is and stressed")
        anat = REAL / "sub-gbm7294" / "anat"
        names = {"T1w": "T1w", "ceT1w": "ce-gadolinium_T1w", "T2w": "T2w", "FLAIR": "FLAIR"}
        images = {m: nib.load(anat / f"sub-gbm7294_{n}.nii.gz") for m, n in names.items()}
        ref = nib.load(REAL / "derivatives/reference-masks/sub-gbm7294/anat/sub-gbm7294_desc-tumour_dseg.nii.gz")
        real_rows.append(run_case("sub-gbm7294", images, ref, args, models, (1, 3, 4)))
        for k, kind in enumerate(("scaled", "bias", "thick")):
            variant = stressed(images, kind, np.random.default_rng(7294 + k))
            real_rows.append(run_case(f"sub-gbm7294 {kind}", variant, ref, args, models, (1, 3, 4)))
    print()
    for label in models:
        print(f"model {label}:")
        summary("simulated", [r[label] for r in sim_rows], with_icc=True)
        summary("BraTS-like", [r[label] for r in brats_rows])
        summary("sub-gbm7294 as it is", [r[label] for r in real_rows[:1]])
        summary("sub-gbm7294 stressed (scaled, bias, thick)", [r[label] for r in real_rows[1:]])


if __name__ == "__main__":
    main()
