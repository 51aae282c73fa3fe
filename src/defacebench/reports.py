"""Study reports: the per-cohort tables and the end-of-run summary.

Agreement and failure statistics come from :mod:`defacebench.tables`; this module
adds the defacing (integrity and privacy) table and ties the files together.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .io import read_json, write_text
from . import overlap, tables

#: Columns of the defacing table, with their meaning.
DEFACING_COLUMNS = {
    "method": "defacing method as configured",
    "backend": "what actually ran (a re-implementation says so)",
    "modality": "image defaced (T1w, ceT1w, T2w, FLAIR)",
    "n_images": "images the method was applied to",
    "n_failed": "images the method failed on (no defaced image; analyses of it are failures)",
    "n_no_face": "images with no face to remove (skull-stripped or already defaced; defacebench.deface.face): "
    "not defaced, the variant is the full image, so their analyses equal the full image's",
    "face_region_changed_mean": "mean fraction of the template face region whose voxels changed (1 = whole face altered)",
    "face_region_changed_min": "lowest such fraction over the images",
    "brain_voxels_changed_mean": "mean fraction of the full image's brain-mask voxels changed by defacing (0 = brain untouched)",
    "brain_voxels_changed_max": "highest such fraction over the images",
    "n_brain_removed": "images on which defacing removed brain: more than deface.brain_removed_fraction (default 0.1 %) "
    "of the brain's voxels changed (counted also when deface.brain_removed_is_failure made them failures)",
    "brain_removed_max_pct": "largest share of brain voxels changed over the flagged images, percent (n/a: none flagged)",
    "face_detected_full": "images whose frontal surface render of the FULL head had a face detected (OpenCV Haar cascade)",
    "face_detected_defaced": "images whose render of the DEFACED head still had a face detected (lower is better for privacy)",
    "runtime_s_mean": "mean wall time of defacing per image, seconds",
}


def defacing_records(paths) -> pd.DataFrame:
    """One row per defaced image from the integrity records written by the deface rule."""
    rows = []
    for path in paths:
        record = read_json(path)
        images = record.get("images") or {}
        base = {
            "cohort": record.get("cohort"),
            "subject": record.get("subject"),
            "method": record.get("method"),
            "backend": record.get("backend"),
            "subject_status": record.get("status"),
            "subject_message": record.get("message", ""),
        }
        if not images:
            rows.append(
                {
                    **base,
                    "modality": "",
                    "status": record.get("status", "failed"),
                    "failed_stage": record.get("failed_stage", ""),
                    "message": record.get("message", ""),
                }
            )
        for modality, info in images.items():
            row = {**base, "modality": modality}
            row.update({k: v for k, v in info.items() if not isinstance(v, (dict, list))})
            row.setdefault("status", record.get("status"))
            rows.append(row)
    return pd.DataFrame(rows)


def defacing_table(long: pd.DataFrame) -> pd.DataFrame:
    """Summarise integrity and privacy per method and modality."""
    if long.empty:
        return pd.DataFrame(columns=list(DEFACING_COLUMNS))
    out = []
    for (method, modality), group in long.groupby(["method", "modality"], sort=True):
        ok = group[group["status"] == "ok"]

        def col(name, how):
            if name not in ok or ok[name].dropna().empty:
                return float("nan")
            return getattr(ok[name].astype(float), how)()

        def count_true(name, rows=ok):
            return int((rows[name] == True).sum()) if name in rows else 0  # noqa: E712 (None/NaN are not True)

        flagged = group[group["brain_removed"] == True] if "brain_removed" in group else group.iloc[:0]  # noqa: E712

        out.append(
            {
                "method": method,
                "backend": "; ".join(sorted({str(b) for b in group["backend"].dropna()})),
                "modality": modality,
                "n_images": len(group),
                "n_failed": int((~group["status"].isin(["ok", "no_face"])).sum()),
                "n_no_face": int((group["status"] == "no_face").sum()),
                "face_region_changed_mean": col("face_region_changed_fraction", "mean"),
                "face_region_changed_min": col("face_region_changed_fraction", "min"),
                "brain_voxels_changed_mean": col("brain_voxels_changed_fraction", "mean"),
                "brain_voxels_changed_max": col("brain_voxels_changed_fraction", "max"),
                "n_brain_removed": len(flagged),
                "brain_removed_max_pct": float(flagged["brain_removed_pct"].astype(float).max())
                if len(flagged)
                else float("nan"),
                "face_detected_full": count_true("face_detected_full"),
                "face_detected_defaced": count_true("face_detected_defaced"),
                "runtime_s_mean": col("runtime_s", "mean"),
            }
        )
    return pd.DataFrame(out, columns=list(DEFACING_COLUMNS))


def markdown_table(df: pd.DataFrame, title: str, legend: dict, preamble: list[str] = ()) -> str:
    """A table in Markdown: title, optional preamble paragraphs, the table, and a legend of its columns."""
    lines = [f"# {title}", ""]
    for paragraph in preamble:
        lines += [paragraph, ""]
    lines += [df.to_markdown(index=False, floatfmt=".4g") if not df.empty else "(no rows)", "", "## Columns", ""]
    lines += [f"- `{c}`: {legend[c]}" for c in df.columns if c in legend]
    return "\n".join(lines) + "\n"


def write_cohort_tables(
    analysis_paths,
    deface_paths,
    out_dir: str | Path,
    cohort: str,
    segmentation_root: str | Path | None = None,
    images: dict | None = None,
) -> None:
    """Write every table of one cohort under ``out_dir``.

    With ``segmentation_root`` (the cohort's label maps) also the overlap table,
    ``<cohort>_overlap.tsv`` (per subject) and ``.md`` (summary, then per subject),
    and its figure ``<cohort>_overlap.png`` drawn on the full images (``images``:
    subject -> modality -> path).
    """
    out_dir = Path(out_dir)
    records = tables.load_records(analysis_paths)
    tables.write_tables(records, out_dir, cohort)
    tables.plot_agreement(records, out_dir / f"{cohort}_agreement.png", cohort)
    if segmentation_root is not None:
        write_overlap_tables(records, segmentation_root, out_dir, cohort, images)
    write_accuracy_tables(records, out_dir, cohort)
    long = defacing_records(deface_paths)
    summary = defacing_table(long)
    write_text(summary.to_csv(sep="\t", index=False, na_rep="n/a"), out_dir / f"{cohort}_defacing.tsv")
    write_text(
        markdown_table(summary, f"Defacing integrity and privacy: cohort {cohort}", DEFACING_COLUMNS),
        out_dir / f"{cohort}_defacing.md",
    )


def write_accuracy_tables(records: pd.DataFrame, out_dir: str | Path, cohort: str) -> None:
    """``<cohort>_accuracy.tsv`` and ``.md``: each method's accuracy against the user's reference labels.

    Written for every cohort; without a ``reference`` block (or for a simulated
    cohort, whose accuracy is its Dice against the truth in the overlap table)
    the table has no rows and the Markdown says why.
    """
    from . import reference

    records = records[records["cohort"] == cohort]
    summary = reference.accuracy_table(records)
    per_subject = reference.accuracy_per_subject(records)
    write_text(summary.to_csv(sep="\t", index=False, na_rep="n/a"), Path(out_dir) / f"{cohort}_accuracy.tsv")
    preamble = [
        "Each successful analysis compared with the user's reference labels (config `reference`), on the "
        "reference's grid (the analysis' label map resampled by nearest neighbour): Dice (Dice 1945), volume "
        "difference (analysis minus reference) and HD95 (95th percentile of the symmetric surface distances; "
        "Huttenlocher et al. 1993, as in the BraTS evaluation, Bakas et al. 2018)."
    ]
    if summary.empty:
        preamble.append(
            "No analysis of this cohort was compared with a reference: the cohort has no `reference` block "
            "(a simulated cohort's accuracy is its Dice against the truth, in the overlap table)."
        )
    text = markdown_table(
        summary, f"Accuracy against the reference labels: cohort {cohort}", reference.ACCURACY_COLUMNS, preamble
    )
    if not per_subject.empty:
        text += "\n## Per subject\n\n" + per_subject.to_markdown(index=False, floatfmt=".4g") + "\n"
    write_text(text, Path(out_dir) / f"{cohort}_accuracy.md")


def write_overlap_tables(
    records: pd.DataFrame, segmentation_root: str | Path, out_dir: str | Path, cohort: str, images: dict | None = None
) -> None:
    """``<cohort>_overlap.tsv``, ``.md`` and ``.png``: where the segmentations of defaced and full images agree."""
    records = records[records["cohort"] == cohort]
    per_subject = overlap.overlap_table(records, segmentation_root)
    overlap.plot_overlap(
        per_subject, records, segmentation_root, images or {}, Path(out_dir) / f"{cohort}_overlap.png", cohort
    )
    summary = overlap.overlap_summary(per_subject)
    write_text(per_subject.to_csv(sep="\t", index=False, na_rep="n/a"), Path(out_dir) / f"{cohort}_overlap.tsv")
    text = markdown_table(
        summary, f"Overlap of segmentations, defaced against full images: cohort {cohort}", overlap.OVERLAP_COLUMNS
    )
    text += "\n## Per subject\n\n" + (
        per_subject.to_markdown(index=False, floatfmt=".4g") if not per_subject.empty else "(no rows)"
    )
    text += (
        "\n\nDice similarity coefficient (Dice 1945), on the complete cases of the agreement table; "
        "label maps in the cohort's `segmentations/` folder.\n"
    )
    write_text(text, Path(out_dir) / f"{cohort}_overlap.md")


def overlap_lines(overlap_tsv: str | Path) -> list[str]:
    """Summary lines of one cohort's overlap table: Dice against the full image's and the truth's regions."""
    per_subject = pd.read_csv(overlap_tsv, sep="\t", dtype={"subject": str}, na_values=["n/a"])
    if per_subject.empty:
        return []
    lines = [f"Overlap with the full image's segmentation ({Path(overlap_tsv).name.removesuffix('_overlap.tsv')}):"]
    for row in overlap.overlap_summary(per_subject).itertuples():
        truth = ""
        if pd.notna(row.dice_full_vs_truth_mean):
            truth = (
                f"; Dice vs truth full {row.dice_full_vs_truth_mean:.3f} / defaced {row.dice_defaced_vs_truth_mean:.3f}"
            )
        # four decimals: defacing moves a few voxels, and 0.9996 is not 1
        lines.append(
            f"  {row.outcome:<4} {row.method:<12} n={row.n_complete:<3} Dice vs full mean "
            f"{row.dice_vs_full_mean:.4f} (min {row.dice_vs_full_min:.4f}){truth}"
        )
    return lines + [""]


def brain_removed_lines(defacing: pd.DataFrame) -> list[str]:
    """Loud summary lines for the defacing-table rows whose method removed brain (``n_brain_removed`` > 0)."""
    if "n_brain_removed" not in defacing:
        return []
    lines = []
    for row in defacing[defacing["n_brain_removed"].fillna(0) > 0].itertuples():
        lines.append(
            f"  !! BRAIN REMOVED: {row.method} changed brain voxels on {int(row.n_brain_removed)}/{row.n_images} "
            f"{row.modality} images (up to {row.brain_removed_max_pct:.2f} % of the brain); every analysis of "
            "those images measured a brain that defacing cut (see the defacing records' warning)"
        )
    return lines


def no_face_lines(defacing: pd.DataFrame) -> list[str]:
    """Summary lines for the defacing-table rows with images that had no face (``n_no_face`` > 0)."""
    if "n_no_face" not in defacing:
        return []
    return [
        f"  {row.method:<12} {row.modality:<6} no face to remove on {int(row.n_no_face)}/{row.n_images} images "
        "(skull-stripped or already defaced): not defaced, the variant is the full image"
        for row in defacing[defacing["n_no_face"].fillna(0) > 0].itertuples()
    ]


def accuracy_lines(accuracy_tsv: str | Path) -> list[str]:
    """Summary lines of one cohort's accuracy table (against the user's reference labels); none when it is empty."""
    table = pd.read_csv(accuracy_tsv, sep="\t", na_values=["n/a"])
    if table.empty:
        return []
    lines = [f"Accuracy against the reference labels ({Path(accuracy_tsv).name.removesuffix('_accuracy.tsv')}):"]
    for row in table.itertuples():
        change = "" if pd.isna(row.dice_diff_vs_full_mean) else f" (vs full {row.dice_diff_vs_full_mean:+.4f})"
        hd95 = "n/a" if pd.isna(row.hd95_mm_mean) else f"{row.hd95_mm_mean:.1f} mm"
        dice = "n/a" if pd.isna(row.dice_mean) else f"{row.dice_mean:.4f}"
        volume = "n/a" if pd.isna(row.volume_difference_ml_mean) else f"{row.volume_difference_ml_mean:+.2f} ml"
        lines.append(
            f"  {row.outcome:<4} {row.method:<12} n={row.n:<3} Dice {dice}{change}; volume difference {volume}; "
            f"HD95 {hd95}"
        )
    return lines + [""]


def write_study_summary(
    records_tsvs, defacing_tsvs, out_path: str | Path, study: str, overlap_tsvs=(), accuracy_tsvs=()
) -> str:
    """Write (and return) the plain-text summary of the whole study."""
    frames = [tables.read_records_tsv(p) for p in records_tsvs]
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    text = [f"defacebench study '{study}'", "=" * (19 + len(study)), "", tables.summary_text(records), ""]
    for path in overlap_tsvs:
        text += overlap_lines(path)
    for path in accuracy_tsvs:
        text += accuracy_lines(path)
    for path in defacing_tsvs:
        df = pd.read_csv(path, sep="\t")
        if df.empty:
            continue
        text.append(f"Defacing ({Path(path).name.removesuffix('_defacing.tsv')}):")
        for row in df.itertuples():
            if getattr(row, "n_no_face", 0) == row.n_images:
                continue  # nothing was defaced: no_face_lines says so, and every mean here would be n/a
            text.append(
                f"  {row.method:<12} {row.modality:<6} failed {row.n_failed}/{row.n_images}; "
                f"face region changed {row.face_region_changed_mean:.0%}; brain voxels changed "
                f"{row.brain_voxels_changed_mean:.3%}; face detected {row.face_detected_defaced}/{row.face_detected_full} "
                f"(defaced/full renders)"
            )
        text += brain_removed_lines(df) + no_face_lines(df)
        text.append("")
    text.append(f"Tables: {Path(out_path).parent}/")
    out = "\n".join(text) + "\n"
    write_text(out, out_path)
    return out
