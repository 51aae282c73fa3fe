"""The image-quality arm of a study: MRIQC-style IQMs of every T1w image variant, and their agreement.

Provins et al. (2025, PLoS Biol 23:e3003149) found MRIQC's image-quality metrics (Esteban et
al. 2017, PLoS One 12:e0184661) "mostly insensitive" to PyDeface on IXI. This arm asks the same
of a study's own images and defacing methods: every T1w variant (the full image and each defaced
one) gets the IQMs of :func:`defacebench.quality.iqms.measure_image` (``defacebench-iqms``, a
re-implementation after MRIQC 24.0.2), as MRIQC would compute them on each image independently;
then, per defacing method, each IQM's paired agreement with the full image (Bland-Altman bias and
limits, parametric and bootstrap CIs, paired t test with Holm's correction over the IQMs,
ICC(A,1)) and the multivariate paired test of all IQMs (:mod:`defacebench.quality.paired`).

A step that cannot run on an image (defacing failed, bad input, brain extraction, N4,
segmentation, registration) is a failed record with its stage and reason; the agreement of a
method is computed over the subjects whose IQMs exist on both the full and the defaced image.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import load_image, read_json, validate_input_image, write_text
from ..reports import markdown_table
from ..records import AnalysisFailure, package_versions

#: The record's outcome name (records/<cohort>/IQM/...).
OUTCOME = "IQM"

#: What the records call the implementation (never "MRIQC": it is a re-implementation).
BACKEND = "defacebench-iqms"

#: Distributions whose versions each record carries.
TOOLS = ("antspyx", "deepbet", "torch", "nibabel", "numpy", "scipy")

#: Variables carried by every IQM table row besides the IQMs themselves.
ID_COLUMNS = (
    "cohort",
    "subject",
    "variant",
    "status",
    "failed_stage",
    "message",
    "backend",
    "brain_mask_source",
    "runtime_s",
)


def brain_mask_from_tissue_labels(segmentation_dir, subject: str, variant: str, reference) -> np.ndarray | None:
    """The brain mask the NBV arm used on this very image: its tissue label map > 0 (None when it has none).

    :func:`defacebench.analysis.nbv.tissue_labels` labels every voxel of the arm's brain mask
    (CSF, GM or WM), so the label map's support is that mask, on the image's own grid. Reusing
    it saves running the brain-extraction backend a second time on the same voxels.
    """
    if segmentation_dir is None:
        return None
    from ..overlap import segmentation_name

    path = Path(segmentation_dir) / segmentation_name("NBV", subject, variant)
    if not path.exists():
        return None
    labels = load_image(path)
    if labels.shape[:3] != reference.shape[:3] or not np.allclose(labels.affine, reference.affine, atol=1e-4):
        raise ValueError(f"{path} is not on the grid of the image it was made from")
    return np.asarray(labels.dataobj) > 0


def image_quality_record(
    t1w_path,
    *,
    cohort: str,
    subject: str,
    variant: str,
    deface_record_path=None,
    nbv_segmentation_dir=None,
    preparation_dir=None,
    threads: int = 1,
    nbv_intermediates: dict | None = None,
    nbv_brain_mask_note: str = "",
) -> dict:
    """IQMs of one T1w image variant, as a record (dict): ``iqms`` and ``undefined`` on success.

    ``nbv_intermediates``: what the NBV arm kept of its run on this very image in this process
    (:func:`defacebench.analysis.nbv.keep_intermediates`); its brain mask, N4 field, partial
    volumes and brain affine are taken where they were made as the IQMs' own steps would make them
    (:func:`defacebench.quality.masks.reusable_from_nbv`; the record's provenance lists them under
    ``reused``), and ``nbv_brain_mask_note`` says where the NBV arm's mask came from. Otherwise the
    brain mask comes, in order of preference, from the NBV arm's label map of the same image
    (``nbv_segmentation_dir``), from the defacing preparation's mask of the same full T1w
    (``preparation_dir``, full images only; reused only where the voxels, backend and threads
    match, :func:`defacebench.runner.preparation_mask`), or from the brain-extraction backend run
    here. The record names which (``brain_mask_source``).
    """
    from ..runner import deface_failure, preparation_mask
    from .iqms import measure_image
    from .masks import reusable_from_nbv

    start = time.perf_counter()
    record = {
        "cohort": cohort,
        "subject": subject,
        "variant": variant,
        "outcome": OUTCOME,
        "status": "ok",
        "failed_stage": "",
        "message": "",
        "backend": BACKEND,
        "brain_mask_source": "",
        "tool_versions": package_versions(*TOOLS),
        "iqms": {},
        "undefined": {},
        "details": {},
    }
    try:
        failed = deface_failure(read_json(deface_record_path) if deface_record_path else None, ("T1w",))
        if failed:
            raise AnalysisFailure("deface", f"defacing failed, no image to measure ({failed})")
        if t1w_path is None or not Path(t1w_path).exists() and not Path(t1w_path).is_symlink():
            raise AnalysisFailure("input", "no T1w image for this subject")
        img = validate_input_image(t1w_path)
        reused = reusable_from_nbv(nbv_intermediates, img) if nbv_intermediates else {}
        mask = None if reused else brain_mask_from_tissue_labels(nbv_segmentation_dir, subject, variant, img)
        if reused:
            record["brain_mask_source"] = "the NBV arm's brain mask of this image" + (
                f" ({nbv_brain_mask_note})" if nbv_brain_mask_note else ""
            )
            result = measure_image(img, None, threads=threads, reused=reused)
        elif mask is not None:
            record["brain_mask_source"] = "the NBV arm's tissue label map of this image"
            result = measure_image(img, mask, threads=threads)
        else:
            with preparation_mask(preparation_dir if variant == "none" else None, t1w_path) as uses:
                result = measure_image(img, None, threads=threads)
            record["brain_mask_source"] = (
                f"the defacing preparation's mask ({'; '.join(sorted(set(uses)))})"
                if uses
                else "brain extraction run on this image"
            )
    except AnalysisFailure as failure:
        record.update(status="failed", failed_stage=failure.stage, message=failure.reason)
    else:
        record["iqms"] = result["iqms"]
        record["undefined"] = result["undefined"]
        record["backend"] = result.get("implementation", BACKEND)
        record["details"] = {
            "version": result.get("version"),
            "reference": result.get("reference"),
            "stage_times_s": result.get("stage_times_s", {}),
            "provenance": result.get("provenance", {}),
        }
    record["runtime_s"] = round(time.perf_counter() - start, 3)
    return record


def load_iqm_records(paths) -> pd.DataFrame:
    """One row per image variant: the identifying columns, then one column per IQM (NaN when failed or undefined)."""
    rows = []
    for path in paths:
        record = read_json(path)
        row = {key: record.get(key, "") for key in ID_COLUMNS}
        row.update(
            {name: (np.nan if value is None else float(value)) for name, value in record.get("iqms", {}).items()}
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    for key in ("cohort", "subject", "variant"):
        if key in table:
            table[key] = table[key].astype(str)
    return table


def iqm_names(table: pd.DataFrame) -> list[str]:
    """The IQM columns of a :func:`load_iqm_records` table, in order."""
    return [c for c in table.columns if c not in ID_COLUMNS]


def method_pairs(table: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aligned IQMs of the full and the ``method``-defaced images of the subjects measured on both."""
    ok = table[table["status"] == "ok"]
    names = iqm_names(table)
    full = ok[ok["variant"] == "none"].set_index("subject")[names]
    defaced = ok[ok["variant"] == method].set_index("subject")[names]
    subjects = sorted(set(full.index) & set(defaced.index))
    return full.loc[subjects], defaced.loc[subjects]


def holm(p_values) -> np.ndarray:
    """Holm's (1979, Scand J Stat 6:65) step-down adjusted p values; NaN stays NaN and is not counted."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


#: Columns of the IQM agreement table, and what they mean.
IQM_AGREEMENT_LEGEND = {
    "method": "defacing method compared with the full image",
    "iqm": "image-quality metric (MRIQC's name; computed by defacebench-iqms, a re-implementation after MRIQC 24.0.2)",
    "mean_full": "mean of the IQM on the full images",
    "mean_defaced": "mean of the IQM on the defaced images",
    "p_holm": "p of the paired t test, Holm-adjusted over the IQMs of this method (Holm 1979)",
}


def iqm_agreement(table: pd.DataFrame, methods, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method and IQM: Bland-Altman (full minus defaced, as Provins et al. 2025), paired t, Holm, ICC(A,1)."""
    from .paired import agreement_table

    parts = []
    for method in methods:
        full, defaced = method_pairs(table, method)
        if full.empty:
            continue
        part = agreement_table(full, defaced, key="iqm", n_boot=n_boot, seed=seed)
        part.insert(0, "method", method)
        part.insert(2, "mean_full", full.mean().to_numpy())
        part.insert(3, "mean_defaced", defaced.mean().to_numpy())
        part["p_holm"] = holm(part["p"])
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["method", "iqm", "mean_full", "mean_defaced", "p_holm"])
    return pd.concat(parts, ignore_index=True)


def iqm_multivariate(table: pd.DataFrame, methods, n_perm: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method: are the IQMs jointly unchanged? PCA of the standardised IQMs, then Hotelling's paired T^2.

    IQMs undefined on any image of the pairs, or constant over them, are left out (they carry no
    information for a PCA); the ``iqms_used`` column says how many entered.
    """
    from .paired import multivariate_paired_test

    rows = []
    for method in methods:
        full, defaced = method_pairs(table, method)
        both = pd.concat([full, defaced])
        usable = [c for c in both.columns if np.isfinite(both[c]).all() and both[c].std() > 0]
        if len(full) < 3 or not usable:
            rows.append(
                {
                    "method": method,
                    "group": "pooled",
                    "n": len(full),
                    "iqms_used": len(usable),
                    "note": "fewer than 3 complete pairs" if len(full) < 3 else "no IQM varies",
                }
            )
            continue
        result = multivariate_paired_test(full[usable].to_numpy(), defaced[usable].to_numpy(), n_perm=n_perm, seed=seed)
        result.insert(0, "method", method)
        result.insert(3, "iqms_used", len(usable))
        rows.extend(result.to_dict("records"))
    return pd.DataFrame(rows)


def write_iqm_tables(record_paths, out_dir, cohort: str, methods) -> dict[str, Path]:
    """``<cohort>_iqms.tsv`` (every image), ``_iqm_agreement.tsv|.md`` and ``_iqm_multivariate.tsv|.md``."""
    from .paired import AGREEMENT_LEGEND

    out_dir = Path(out_dir)
    table = load_iqm_records(record_paths)
    agreement = iqm_agreement(table, methods)
    multivariate = iqm_multivariate(table, methods)
    paths = {
        "iqms": out_dir / f"{cohort}_iqms.tsv",
        "agreement": out_dir / f"{cohort}_iqm_agreement.tsv",
        "agreement_md": out_dir / f"{cohort}_iqm_agreement.md",
        "multivariate": out_dir / f"{cohort}_iqm_multivariate.tsv",
        "multivariate_md": out_dir / f"{cohort}_iqm_multivariate.md",
    }
    write_text(table.to_csv(sep="\t", index=False, na_rep="n/a"), paths["iqms"])
    write_text(agreement.to_csv(sep="\t", index=False, na_rep="n/a"), paths["agreement"])
    write_text(multivariate.to_csv(sep="\t", index=False, na_rep="n/a"), paths["multivariate"])
    failed = table[table["status"] != "ok"] if "status" in table else table.iloc[0:0]
    preamble = [
        f"Images measured: {len(table)}; failed: {len(failed)}"
        + "".join(
            f"\n- sub-{r.subject} variant {r.variant}: {r.failed_stage}: {r.message}" for r in failed.itertuples()
        ),
        "Differences are full minus defaced (as Provins et al. 2025). IQMs by defacebench-iqms, a "
        "re-implementation after MRIQC 24.0.2 (Esteban et al. 2017), on each image independently.",
    ]
    legend = {**AGREEMENT_LEGEND, **IQM_AGREEMENT_LEGEND, "bias": "Bland-Altman bias: mean of full minus defaced"}
    write_text(
        markdown_table(agreement, f"Image-quality metrics, defaced vs full: cohort {cohort}", legend, preamble),
        paths["agreement_md"],
    )
    multivariate_legend = {
        "method": "defacing method compared with the full image",
        "group": "pairs tested (pooled: every subject measured on both images)",
        "iqms_used": "IQMs entering the PCA (defined on every image and not constant)",
        "k": "principal components kept (eigenvalue > 1 of the standardised IQMs)",
        "T2": "Hotelling's paired T^2 of the component scores (Hotelling 1931)",
        "p": "p of the F test of T^2 (assumes normality)",
        "p_signflip": "sign-flip permutation p value",
    }
    write_text(
        markdown_table(
            multivariate,
            f"Image-quality metrics, multivariate paired test: cohort {cohort}",
            multivariate_legend,
            preamble[1:],
        ),
        paths["multivariate_md"],
    )
    return paths
