"""A cohort's privacy table (per method: detection, rank-1/rank-5 identification) and trade-off figure.

The table reads the per-image privacy records (:func:`.image.privacy_record`, with ``subject``,
``variant`` and ``status`` added by the workflow); the figure puts each method's identification
rate beside what it costs the analyses: the worst loss of agreement, ``1 - ICC(A,1)``, over the
cohort's outcomes (``<cohort>_agreement.tsv``) and the worst failure rate on the defaced images
(``<cohort>_failures.tsv``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, write_text
from ..tables import FULL
from .attack import attack, identification

PRIVACY_COLUMNS = {
    "method": "defacing method; `none` is the full image, the attack's positive control",
    "n_images": "images of the cohort with this variant",
    "n_failed": "images that could not be rendered or described (reason in the record); counted as not identified",
    "n_views": "renders of the variant (images x viewpoints)",
    "haar_view_rate": "share of renders on which OpenCV's Haar cascade found a face (Viola & Jones 2001)",
    "hog_view_rate": "share of renders on which dlib's HOG detector found a face (Dalal & Triggs 2005)",
    "frontal_haar_rate": "share of images whose frontal render the Haar cascade found a face on",
    "frontal_hog_rate": "share of images whose frontal render the HOG detector found a face on",
    "expected_box_rate": "share of renders described on the expected face box because no detector fired",
    "n_gallery": "subjects in the gallery (full-head renders from other viewpoints)",
    "chance_rank1": "rank-1 rate of a random guess, 1 / n_gallery",
    "rank1_hits": "probes whose own subject ranked first",
    "rank1_rate": "rank-1 identification rate (probes = all images of the variant)",
    "rank1_ci_low": "lower bound of the Clopper-Pearson 95 % interval of rank1_rate",
    "rank1_ci_high": "upper bound of the Clopper-Pearson 95 % interval of rank1_rate",
    "rank5_hits": "probes whose own subject ranked in the first five",
    "rank5_rate": "rank-5 identification rate",
    "rank5_ci_low": "lower bound of the Clopper-Pearson 95 % interval of rank5_rate",
    "rank5_ci_high": "upper bound of the Clopper-Pearson 95 % interval of rank5_rate",
    "face_region_changed_mean": "mean share of the template face region the method changed (defacing table)",
    "brain_voxels_changed_mean": "mean share of brain voxels the method changed (defacing table)",
}


def _rate(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def privacy_table(records: list[dict], methods: list[str], defacing: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per variant (the full image first, then ``methods``); see :data:`PRIVACY_COLUMNS`.

    ``records``: per-image records with ``subject``, ``variant``, ``status`` ("ok" or "failed") and,
    when ok, the privacy record's ``views``. ``defacing``: the cohort's defacing table, for the
    face-region and brain changes of each method (T1w rows).
    """
    variants = [FULL] + [m for m in methods if m != FULL]
    ok = {(r["subject"], r["variant"]): r for r in records if r.get("status") == "ok"}
    result = attack(ok, variants)
    rows = []
    for variant in variants:
        mine = [r for r in records if r["variant"] == variant]
        good = [r for r in mine if r.get("status") == "ok"]
        views = [v for r in good for v in r["views"].values()]
        frontal = [r["views"]["frontal"] for r in good if "frontal" in r["views"]]
        n_gallery = len(result[variant]["gallery"])
        # every image of the variant is a probe: failed ones count as not identified (the last rank)
        ranks = np.concatenate([result[variant]["ranks"], np.full(len(mine) - len(good), max(n_gallery, 1))])
        n = len(mine)
        row = {
            "method": variant,
            "n_images": n,
            "n_failed": n - len(good),
            "n_views": len(views),
            "haar_view_rate": _rate(v["haar_faces"] > 0 for v in views),
            "hog_view_rate": _rate((v.get("hog_faces") or 0) > 0 for v in views),
            "frontal_haar_rate": _rate(v["haar_faces"] > 0 for v in frontal),
            "frontal_hog_rate": _rate((v.get("hog_faces") or 0) > 0 for v in frontal),
            "expected_box_rate": _rate(v.get("box_source") == "expected" for v in views),
            "n_gallery": n_gallery,
            "chance_rank1": 1 / n_gallery if n_gallery else float("nan"),
        }
        row.update(identification(ranks, 1))
        row.update(identification(ranks, 5))
        rows.append(row)
    table = pd.DataFrame(rows)
    if defacing is not None and not defacing.empty:
        t1w = defacing[defacing["modality"] == "T1w"] if "modality" in defacing else defacing
        cols = [c for c in ("face_region_changed_mean", "brain_voxels_changed_mean") if c in t1w]
        table = table.merge(t1w[["method"] + cols].drop_duplicates("method"), on="method", how="left")
    return table[[c for c in PRIVACY_COLUMNS if c in table]]


def to_markdown(table: pd.DataFrame, cohort: str, viewpoints: list[str]) -> str:
    """The privacy table as Markdown, with what it measures and what it does not prove."""
    body = table.to_markdown(index=False, floatfmt=".3g") if not table.empty else "(no rows)"
    lines = [
        f"# Privacy: re-identification attack, cohort {cohort}",
        "",
        f"Each image's skin surface is rendered from {len(viewpoints)} viewpoints ({', '.join(viewpoints)}); "
        "each render is described by dlib's face model; each image (the probe) is ranked against the "
        "full-head renders of every subject from the other viewpoints. The full image (`none`) is the "
        "positive control: an attack that cannot identify full heads proves nothing about defaced ones. "
        "Renders and an open face model make this a lower bound on what an attacker with photographs "
        "and a commercial model can do (Schwarz et al. 2019, 2021).",
        "",
        body,
        "",
        "## Columns",
        "",
    ]
    lines += [f"- `{c}`: {PRIVACY_COLUMNS[c]}" for c in table.columns]
    return "\n".join(lines) + "\n"


def worst_costs(agreement: pd.DataFrame | None, failures: pd.DataFrame | None) -> pd.DataFrame:
    """Per method: the worst ``1 - ICC(A,1)`` and the worst defaced-image failure rate over the outcomes."""
    parts = []
    if agreement is not None and not agreement.empty and "icc_a1" in agreement:
        loss = agreement.assign(icc_loss=(1 - agreement["icc_a1"]).abs())
        parts.append(loss.groupby("method")["icc_loss"].max())
    if failures is not None and not failures.empty and "failed_defaced" in failures:
        rate = failures.assign(
            failure_rate=failures["failed_defaced"] / failures["n_subjects"].where(failures["n_subjects"] > 0)
        )
        parts.append(rate.groupby("method")["failure_rate"].max())
    if not parts:
        return pd.DataFrame(columns=["method", "icc_loss", "failure_rate"])
    return pd.concat(parts, axis=1).reset_index()


def plot_tradeoff(table: pd.DataFrame, costs: pd.DataFrame, out_png: str | Path, cohort: str) -> Path:
    """Identification after defacing against the worst ICC(A,1) loss and failure rate, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merged = table[table["method"] != FULL].merge(costs, on="method", how="left")
    control = table[table["method"] == FULL]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, column, label in (
        (axes[0], "icc_loss", "worst |ICC(A,1) loss| over outcomes"),
        (axes[1], "failure_rate", "worst failure rate on defaced images"),
    ):
        for _, row in merged.iterrows():
            x = row.get(column, np.nan)
            if not np.isfinite(x):
                continue
            err = [[row["rank1_rate"] - row["rank1_ci_low"]], [row["rank1_ci_high"] - row["rank1_rate"]]]
            ax.errorbar([x], [row["rank1_rate"]], yerr=err, fmt="o", capsize=3)
            ax.annotate(row["method"], (x, row["rank1_rate"]), textcoords="offset points", xytext=(5, 4))
        if not control.empty:
            ax.axhline(float(control["rank1_rate"].iloc[0]), color="k", ls="--", lw=1, label="full image (control)")
            ax.axhline(float(control["chance_rank1"].iloc[0]), color="grey", ls=":", lw=1, label="chance")
        ax.set_xlabel(label)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rank-1 identification (95 % CI)")
    axes[1].legend(loc="best", fontsize=8)
    fig.suptitle(f"Privacy against analysis fidelity: cohort {cohort}")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return Path(out_png)


def write_privacy_outputs(
    records: list[dict],
    methods: list[str],
    viewpoints: list[str],
    cohort: str,
    out_tsv: str | Path,
    out_md: str | Path,
    out_png: str | Path,
    defacing: pd.DataFrame | None = None,
    agreement: pd.DataFrame | None = None,
    failures: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write the privacy table (TSV, Markdown) and the trade-off figure; return the table."""
    table = privacy_table(records, methods, defacing)
    write_text(table.to_csv(sep="\t", index=False, na_rep="n/a"), out_tsv)
    write_text(to_markdown(table, cohort, viewpoints), out_md)
    plot_tradeoff(table, worst_costs(agreement, failures), out_png, cohort)
    return table
