"""The provins2025 study: Provins et al. (2025), PLoS Biol 23:e3003149, reproduced from its published data.

Each ``write_*`` function reads the published tables, runs the analysis of
:mod:`~defacebench.quality.ratings` or :mod:`~defacebench.quality.published_iqms`, sets the
published value beside ours (``published_<column>``, from ``data/provins2025_published.yaml``)
and writes a TSV and a Markdown table with a legend, atomically. :func:`claims_table` judges each
published claim at the precision it was printed with.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..io import write_text
from . import paired, published_iqms, ratings

CITATION = (
    "Provins C, et al. (2025) Removing facial features from structural MRI images biases visual quality "
    "assessment. PLoS Biol 23:e3003149"
)

#: Column name of a published value beside ours.
PUBLISHED_PREFIX = "published_"


def load_published(path: str | Path | None = None) -> dict:
    """The published values (``claims`` and ``tables``), by default the package's ``provins2025_published.yaml``."""
    if path is None:
        text = resources.files("defacebench").joinpath("data/provins2025_published.yaml").read_text()
    else:
        text = Path(path).read_text()
    return yaml.safe_load(text)


def _row_mask(table: pd.DataFrame, row: dict) -> np.ndarray:
    mask = np.ones(len(table), dtype=bool)
    for column, value in row.items():
        mask &= (table[column].astype(str) == str(value)).to_numpy()
    return mask


def add_published(table: pd.DataFrame, name: str, published: dict) -> pd.DataFrame:
    """``table`` with a ``published_<column>`` column beside each column the paper reports (NaN where it does not).

    Values come from ``published["tables"][name]`` (by its key column) and from every claim
    about a cell of ``name``. A claim that disagrees with the published table is a data error.
    """
    out = table.copy()
    cells: dict[tuple[int, str], float] = {}
    spec = (published.get("tables") or {}).get(name)
    if spec:
        for key, values in spec["rows"].items():
            rows = np.flatnonzero(_row_mask(out, {spec["key"]: key}))
            if len(values) != len(spec["columns"]):
                raise ValueError(
                    f"published table {name}, row {key}: {len(values)} values for {len(spec['columns'])} columns"
                )
            for i in rows:
                cells.update({(i, column): float(v) for column, v in zip(spec["columns"], values)})
    for claim in published.get("claims") or []:
        if claim.get("table") != name:
            continue
        for i in np.flatnonzero(_row_mask(out, claim["row"])):
            value = float(claim["published"])
            known = cells.get((i, claim["column"]))
            if known is not None and known != value:
                raise ValueError(f"claim {claim['id']} gives {value} but the published table {name} gives {known}")
            cells[(i, claim["column"])] = value
    columns = [c for c in out.columns if any(col == c for _, col in cells)]
    for column in columns:
        values = np.full(len(out), np.nan)
        for (i, col), value in cells.items():
            if col == column:
                values[i] = value
        out.insert(out.columns.get_loc(column) + 1, PUBLISHED_PREFIX + column, values)
    return out


def _decimals(printed) -> int:
    text = str(printed)
    return len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 0


def claims_table(tables: dict[str, pd.DataFrame], published: dict) -> pd.DataFrame:
    """Every published claim with our value and whether it reproduces.

    ``equal_at_published_decimals``: ours rounded to the decimals the paper printed equals the
    published value. ``row_extreme``: the claimed row holds the column's minimum (or maximum)
    over the rows other than ``pooled``, and its value reproduces as above.
    """
    rows = []
    for claim in published.get("claims") or []:
        table = tables.get(claim["table"])
        ours = np.nan
        agrees = False
        note = ""
        if table is None:
            note = f"table {claim['table']} not computed"
        else:
            hit = table[_row_mask(table, claim["row"])]
            if len(hit) != 1:
                note = f"{len(hit)} rows match {claim['row']}"
            else:
                ours = float(hit[claim["column"]].iloc[0])
                decimals = _decimals(claim["published"])
                agrees = bool(np.isclose(round(ours, decimals), float(claim["published"]), rtol=0, atol=1e-12))
                check = claim.get("check") or {"kind": "equal_at_published_decimals"}
                if check["kind"] == "row_extreme":
                    others = table[table["rater"].astype(str) != ratings.POOLED] if "rater" in table else table
                    values = others[claim["column"]].astype(float)
                    extreme = values.min() if check["which"] == "min" else values.max()
                    is_extreme = bool(np.isclose(ours, extreme))
                    note = (
                        "the claimed row holds the extreme"
                        if is_extreme
                        else f"the extreme is {extreme:.4g}, elsewhere"
                    )
                    agrees = agrees and is_extreme
        rows.append(
            {
                "id": claim["id"],
                "claim": claim["claim"],
                "published": claim["published"],
                "ours": ours,
                "reproduced": agrees,
                "table": claim["table"],
                "column": claim["column"],
                "source": claim["source"],
                "note": note,
            }
        )
    return pd.DataFrame(
        rows, columns=["id", "claim", "published", "ours", "reproduced", "table", "column", "source", "note"]
    )


# --------------------------------------------------------------------------- writing


def _tsv(table: pd.DataFrame) -> str:
    return table.to_csv(sep="\t", index=False, na_rep="n/a")


def _legend(table: pd.DataFrame, legend: dict) -> list[str]:
    lines = []
    for column in table.columns:
        if column in legend:
            lines.append(f"- `{column}`: {legend[column]}")
        elif column.startswith(PUBLISHED_PREFIX) and column[len(PUBLISHED_PREFIX) :] in legend:
            lines.append(
                f"- `{column}`: the published value of `{column[len(PUBLISHED_PREFIX) :]}` (n/a: not published)"
            )
    return lines


def markdown_table(table: pd.DataFrame, title: str, legend: dict, preamble: list[str]) -> str:
    """A Markdown table with a preamble (what was computed, from what) and a legend of its columns."""
    # a "|" inside a cell (a model formula) would end the cell
    shown = table.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    body = shown.to_markdown(index=False, floatfmt=".4g") if not table.empty else "(no rows)"
    lines = [
        f"# {title}",
        "",
        *preamble,
        "",
        body,
        "",
        "## Columns",
        "",
        *_legend(table, legend),
        "",
        f"Data and published values: {CITATION}.",
    ]
    return "\n".join(lines) + "\n"


def _write(table: pd.DataFrame, out_dir: Path, stem: str, title: str, legend: dict, preamble: list[str]) -> None:
    write_text(_tsv(table), out_dir / f"{stem}.tsv")
    write_text(markdown_table(table, title, legend, preamble), out_dir / f"{stem}.md")


def write_ratings_lmm(
    ratings_path,
    out_dir,
    published: dict | None = None,
    engine: str = "dense-ml",
    poor_below: float = ratings.POOR_BELOW,
) -> pd.DataFrame:
    """``ratings_lmm.tsv`` and ``.md``: the likelihood-ratio test of defacing, on all raters and on subsets."""
    published = load_published() if published is None else published
    data = ratings.load_ratings(ratings_path)
    table = add_published(ratings.lmm_table(data, engine, poor_below), "ratings_lmm", published)
    n_first = int(table.loc[table["model"] == "all_raters", "n_ratings"].iloc[0])
    preamble = [
        "Linear mixed models of the manual ratings, `rating ~ defaced + (1|subject) + (1|rater)` against "
        "`rating ~ 1 + (1|subject) + (1|rater)`, both fitted by maximum likelihood and compared by a "
        "likelihood-ratio test (chi-squared, 1 df); per-rater models have subject random intercepts only.",
        f"Ratings: {len(data)} in `{Path(ratings_path).name}`; a rater's first rating of an image shown twice is "
        f"kept ({n_first} ratings in the all-raters model). `poor_nondefaced`: the (rater, subject) pairs whose "
        f"nondefaced image that rater rated below {poor_below:g} (poor or exclude), both conditions.",
    ]
    _write(
        table,
        Path(out_dir),
        "ratings_lmm",
        "Defacing and manual quality ratings: mixed models",
        ratings.LMM_LEGEND,
        preamble,
    )
    return table


AGREEMENT_PREAMBLE = (
    "Bland-Altman analysis (Bland & Altman 1986) of nondefaced minus defaced ratings, each rater's "
    "ratings of a subject paired in the order they were made (an image shown twice gives two pairs), "
    "and ICC(A,1) between the two conditions (McGraw & Wong 1996)."
)


def write_ratings_agreement(
    ratings_path,
    out_dir,
    experience_path=None,
    published: dict | None = None,
    sd_multiplier: float = paired.LOA_SD_MULTIPLIER,
    n_boot: int = paired.N_BOOTSTRAP,
    seed: int = 0,
) -> pd.DataFrame:
    """``ratings_agreement.tsv``, ``.md`` and ``ratings_bland_altman.png``: agreement per rater and pooled."""
    published = load_published() if published is None else published
    data = ratings.load_ratings(ratings_path)
    pairs, unpaired = ratings.rating_pairs(data)
    experience = ratings.load_rater_experience(experience_path)
    agreement = ratings.agreement_by_rater(pairs, experience, sd_multiplier, n_boot, seed)
    out_dir = Path(out_dir)
    ratings.plot_bland_altman(pairs, agreement, out_dir / "ratings_bland_altman.png")
    table = add_published(agreement, "ratings_agreement", published)
    legend = {
        "rater": "rater id, or pooled (every pair of every rater)",
        "experience": "the rater's experience (rater_experience.json)",
        **paired.AGREEMENT_LEGEND,
    }
    preamble = [
        AGREEMENT_PREAMBLE,
        f"Limits of agreement: bias -/+ {sd_multiplier:g} SD; CIs 95 %; bootstrap: {n_boot} resamples of the "
        f"pairs, seed {seed}. {len(pairs)} pairs"
        + (f"; {unpaired} rating(s) without a partner left out." if unpaired else "."),
    ]
    _write(table, out_dir, "ratings_agreement", "Defacing and manual quality ratings: agreement", legend, preamble)
    return table


def write_iqm_tables(
    iqms_path,
    out_dir,
    published: dict | None = None,
    sd_multiplier: float = paired.LOA_SD_MULTIPLIER,
    n_boot: int = paired.N_BOOTSTRAP,
    n_perm: int = paired.N_PERMUTATIONS,
    n_components="kaiser",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``iqm_agreement.tsv/.md`` (one row per IQM) and ``iqm_multivariate.tsv/.md`` (per site and pooled)."""
    published = load_published() if published is None else published
    nondefaced, defaced, site = published_iqms.load_iqms(iqms_path)
    agreement = add_published(
        published_iqms.iqm_agreement(nondefaced, defaced, sd_multiplier, n_boot, seed), "iqm_agreement", published
    )
    multivariate = published_iqms.iqm_multivariate(nondefaced, defaced, site, n_components, n_perm, seed)
    out_dir = Path(out_dir)
    legend = {"iqm": "MRIQC image-quality metric (Esteban et al. 2017)", **paired.AGREEMENT_LEGEND}
    _write(
        agreement,
        out_dir,
        "iqm_agreement",
        "Defacing and MRIQC's image-quality metrics: agreement per IQM",
        legend,
        [
            f"Bland-Altman analysis of nondefaced minus defaced IQMs, {len(nondefaced)} subjects "
            f"(`{Path(iqms_path).name}`); limits bias -/+ {sd_multiplier:g} SD; CIs 95 %; bootstrap: {n_boot} "
            f"resamples, seed {seed}. ICC(A,1) between the conditions."
        ],
    )
    multivariate_legend = {
        "sample": "site (as coded in the published table) or pooled",
        "n": "subjects (pairs of images)",
        "k": f"principal components tested ({n_components}: "
        + ("eigenvalue > 1, Kaiser 1960)" if n_components == "kaiser" else "as configured)"),
        "variance_explained": "fraction of the standardised IQMs' variance the k components explain (PCA of all images)",
        "T2": "Hotelling's T^2 of the paired differences of the component scores (Hotelling 1931)",
        "F": "T^2 as an F statistic, (n - k) / (k (n - 1)) T^2",
        "df1": "numerator degrees of freedom (k)",
        "df2": "denominator degrees of freedom (n - k)",
        "p": "p value of the F test (H0: defacing leaves every component's mean unchanged)",
        "wilks_lambda": "Wilks' lambda of the equivalent repeated-measures MANOVA, 1 / (1 + T^2 / (n - 1))",
        "p_signflip": f"permutation p value: {n_perm} random sign flips of whole pairs, seed {seed}",
        "note": "why a statistic is missing",
        "n_iqms": "IQMs in the PCA (constant ones carry no information and are left out)",
    }
    _write(
        multivariate,
        out_dir,
        "iqm_multivariate",
        "Defacing and MRIQC's image-quality metrics: multivariate test",
        multivariate_legend,
        [
            "The IQMs of all images (both conditions) are standardised and reduced by PCA; the paired differences "
            "of the component scores are tested by Hotelling's T^2, per site and pooled (with two conditions, "
            "the repeated-measures MANOVA). The paper does not print these statistics; no published column."
        ],
    )
    return agreement, multivariate


CLAIMS_LEGEND = {
    "id": "claim key (data/provins2025_published.yaml)",
    "claim": "the published finding",
    "published": "the published value, as printed",
    "ours": "our value from the study's table",
    "reproduced": "ours rounded to the published decimals equals the published value (and, for a ranking, the row holds the extreme)",
    "table": "our table holding the value",
    "column": "its column",
    "source": "where in the paper",
    "note": "details of the check",
}


def write_claims(table_paths: dict[str, str | Path], out_dir, published: dict | None = None) -> pd.DataFrame:
    """``claims.tsv`` and ``.md``: every published claim, our value, and whether it reproduces."""
    published = load_published() if published is None else published
    tables = {
        name: pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"rater": str, "model": str, "iqm": str})
        for name, path in table_paths.items()
    }
    claims = claims_table(tables, published)
    _write(
        claims,
        Path(out_dir),
        "claims",
        "Provins et al. (2025): published claims against ours",
        CLAIMS_LEGEND,
        [f"{int(claims['reproduced'].sum())} of {len(claims)} published values reproduced at the precision printed."],
    )
    return claims
