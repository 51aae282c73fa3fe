"""The study report's figures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Each function takes tables the run wrote and returns ``bytes`` (a PNG) ready to embed;
nothing touches pyplot's global state or a display. Figures:

- failure rates on the full and the defaced images per outcome and method (de Sitter
  et al. 2020 compare them with McNemar's test);
- agreement per outcome: a Bland-Altman plot (Bland & Altman 1986, Lancet i:307) and a
  defaced-vs-full scatter with the identity line per method;
- Dice distributions (Dice 1945) of each overlap column;
- a montage of frontal surface renders (full head and each method) per subject;
- face-region and brain-voxel changes per method;
- wall time per workflow stage from the benchmark files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import bland_altman_panel, paired_values

#: Pixels per inch of the embedded PNGs: sharp enough to read, small enough to e-mail.
DPI = 90
#: Colours: the full image, then one per method (matplotlib's tab10, colour-blind friendly order).
FULL_COLOUR = "0.35"
METHOD_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def to_png(fig) -> bytes:
    """A figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)  # every figure lays itself out (tight_layout): one draw, not two
    return buffer.getvalue()


def method_colour(methods: list[str], method: str) -> str:
    return METHOD_COLOURS[methods.index(method) % len(METHOD_COLOURS)] if method in methods else "black"


def failure_chart(failures: pd.DataFrame, cohort: str) -> bytes:
    """Grouped bars: failure rate (%) on the full and on the defaced images per outcome and method,
    each pair labelled with McNemar's exact p (README, failure table)."""
    rows = failures[pd.to_numeric(failures["n_subjects"], errors="coerce") > 0].reset_index(drop=True)
    fig = _figure(max(4.0, 1.1 * len(rows) + 1.5), 3.0)
    ax = fig.subplots()
    x = np.arange(len(rows))
    n = rows["n_subjects"].astype(float).to_numpy()
    full = 100 * rows["failed_full"].astype(float).to_numpy() / n
    defaced = 100 * rows["failed_defaced"].astype(float).to_numpy() / n
    ax.bar(x - 0.2, full, 0.4, color=FULL_COLOUR, label="full image")
    ax.bar(x + 0.2, defaced, 0.4, color="tab:red", label="defaced image")
    for i, row in rows.iterrows():
        p = pd.to_numeric(row.get("mcnemar_p"), errors="coerce")
        ax.text(i, max(full[i], defaced[i]) + 2, f"p={p:.2g}" if np.isfinite(p) else "p=n/a", ha="center", fontsize=7)
    ax.set_xticks(x, [f"{r.outcome}\n{r.method}\n(n={int(r.n_subjects)})" for r in rows.itertuples()], fontsize=7)
    ax.set_ylim(0, 110)
    ax.set_ylabel("analyses failed (%)", fontsize=8)
    ax.set_title(f"Failures, cohort {cohort} (McNemar exact p above each pair)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return to_png(fig)


def agreement_figure(records: pd.DataFrame, outcome: str, methods: list[str], cohort: str) -> bytes:
    """For one outcome: per method (columns), a Bland-Altman plot (top: defaced - full against their
    mean, bias solid, 95 % limits dashed) and a defaced-vs-full scatter with the identity line (bottom),
    over the agreement table's complete cases (:func:`defacebench.tables.paired_values`)."""
    fig = _figure(3.2 * max(1, len(methods)), 6.0)
    axes = fig.subplots(2, max(1, len(methods)), squeeze=False)
    unit = next(iter(records.loc[records["outcome"] == outcome, "unit"].dropna().astype(str)), "") or "ml"
    for col, method in enumerate(methods):
        subjects, full, defaced, _ = paired_values(records, outcome, method, cohort)
        colour = method_colour(methods, method)
        ba_ax, sc_ax = axes[0, col], axes[1, col]
        bland_altman_panel(ba_ax, full, defaced, f"{outcome}: {method} (n={len(subjects)})", unit, colour, 7)
        sc_ax.scatter(full, defaced, s=16, color=colour)
        if len(subjects):
            low, high = float(np.nanmin([full.min(), defaced.min()])), float(np.nanmax([full.max(), defaced.max()]))
            pad = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
            sc_ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linewidth=1, label="identity")
            sc_ax.set_xlim(low - pad, high + pad)
            sc_ax.set_ylim(low - pad, high + pad)
            sc_ax.legend(fontsize=7, loc="upper left")
        else:
            for ax in (ba_ax, sc_ax):
                ax.text(0.5, 0.5, "no complete cases", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        sc_ax.set_xlabel(f"full image ({unit})", fontsize=7)
        sc_ax.set_ylabel(f"defaced image ({unit})", fontsize=7)
        for ax in (ba_ax, sc_ax):
            ax.tick_params(labelsize=7)
    fig.suptitle(f"Agreement with the full image: {outcome}, cohort {cohort}", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def dice_columns(overlap: pd.DataFrame) -> list[str]:
    """The per-subject Dice columns present (against the full image, the truth, a reference)."""
    return [
        c for c in overlap.columns if c.startswith("dice_") and pd.to_numeric(overlap[c], errors="coerce").notna().any()
    ]


def dice_figure(overlap: pd.DataFrame, cohort: str) -> bytes:
    """Per outcome (panel), the distribution of each Dice column per method: a box and the subjects' points."""
    outcomes = list(dict.fromkeys(overlap["outcome"]))
    columns = dice_columns(overlap)
    fig = _figure(max(4.5, 4.6 * len(outcomes)), 3.8)
    axes = fig.subplots(1, max(1, len(outcomes)), squeeze=False)[0]
    rng = np.random.default_rng(0)  # jitter only: the same picture on every run
    for ax, outcome in zip(axes, outcomes):
        sub = overlap[overlap["outcome"] == outcome]
        methods = list(dict.fromkeys(sub["method"]))
        positions, labels = [], []
        for m, method in enumerate(methods):
            for c, column in enumerate(columns):
                values = pd.to_numeric(sub.loc[sub["method"] == method, column], errors="coerce").dropna().to_numpy()
                if column == "dice_full_vs_truth" and m > 0:
                    continue  # the full image's Dice does not depend on the method: drawn once
                pos = len(positions)
                positions.append(pos)
                labels.append(
                    ("full" if column == "dice_full_vs_truth" else method) + "\n" + column.replace("dice_", "")
                )
                if values.size:
                    ax.boxplot([values], positions=[pos], widths=0.5, showfliers=False)
                    ax.scatter(
                        pos + rng.uniform(-0.12, 0.12, values.size),
                        values,
                        s=12,
                        color=METHOD_COLOURS[c % len(METHOD_COLOURS)],
                        zorder=3,
                    )
        ax.set_xticks(positions, labels, fontsize=6, rotation=45, ha="right")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        ax.set_ylabel("Dice", fontsize=8)
        ax.set_title(f"{outcome}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Overlap (Dice) per subject, cohort {cohort}", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def render_montage(tiles: list[list[tuple[str, Path | None, str]]], row_labels: list[str], title: str) -> bytes:
    """A grid of frontal renders: one row per subject, one column per variant.

    ``tiles[row][col]`` is ``(column title, render PNG or None, caption)``; the caption
    says whether a face was detected.
    """
    from matplotlib.image import imread

    nrows, ncols = len(tiles), max(len(r) for r in tiles)
    fig = _figure(1.7 * ncols + 0.6, 1.9 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, row in enumerate(tiles):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.set_axis_off()
                continue
            name, path, caption = row[c]
            if path is not None and Path(path).is_file():
                ax.imshow(imread(str(path)), cmap="gray")
            else:
                ax.text(0.5, 0.5, "no render", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            if r == 0:
                ax.set_title(name, fontsize=9)
            ax.set_xlabel(caption, fontsize=7, color="tab:red" if "face found" in caption and c > 0 else "black")
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def defacing_chart(defacing: pd.DataFrame, cohort: str) -> bytes:
    """Two panels per method and modality: the face region changed (higher hides more) and the
    brain voxels changed (lower spares the brain), as mean fractions from the defacing table."""
    rows = defacing.reset_index(drop=True)
    fig = _figure(max(6.0, 0.55 * len(rows) + 2.0), 6.0)
    axes = fig.subplots(2, 1)
    labels = [f"{r.method}\n{r.modality}" for r in rows.itertuples()]
    x = np.arange(len(rows))
    for ax, column, title in (
        (axes[0], "face_region_changed_mean", "face region changed (mean fraction)"),
        (axes[1], "brain_voxels_changed_mean", "brain voxels changed (mean fraction)"),
    ):
        values = pd.to_numeric(rows.get(column, pd.Series(np.nan, index=rows.index)), errors="coerce").to_numpy()
        ax.bar(x, np.nan_to_num(values), color="tab:purple")
        for i, v in enumerate(values):
            ax.text(
                i,
                (0 if not np.isfinite(v) else v),
                "n/a" if not np.isfinite(v) else f"{v:.3g}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xticks(
            x, labels, fontsize=7, rotation=45 if len(rows) > 6 else 0, ha="right" if len(rows) > 6 else "center"
        )
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"What defacing changed, cohort {cohort}", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def runtime_chart(benchmarks: pd.DataFrame) -> bytes:
    """Horizontal bars: summed wall time per workflow stage (minutes), with the number of jobs."""
    per_stage = benchmarks.groupby("stage")["seconds"].agg(["sum", "count"]).sort_values("sum")
    fig = _figure(6.0, 0.35 * len(per_stage) + 1.2)
    ax = fig.subplots()
    ax.barh(per_stage.index, per_stage["sum"] / 60, color="tab:blue")
    for i, (total, count) in enumerate(zip(per_stage["sum"], per_stage["count"])):
        ax.text(total / 60, i, f" {total / 60:.1f} min, {count} job(s)", va="center", fontsize=7)
    ax.set_xlabel("summed wall time of the stage's jobs (min)", fontsize=8)
    ax.set_xlim(0, max(1e-3, per_stage["sum"].max() / 60) * 1.35)
    ax.tick_params(labelsize=7)
    ax.set_title("Wall time per stage (Snakemake benchmark files)", fontsize=9)
    fig.tight_layout()
    return to_png(fig)


__all__ = [
    "agreement_figure",
    "defacing_chart",
    "dice_figure",
    "failure_chart",
    "render_montage",
    "runtime_chart",
    "to_png",
]
