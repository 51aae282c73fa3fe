"""MRIQC's image-quality metrics of nondefaced and defaced images, as Provins et al. (2025) published them.

Provins et al. (2025), PLoS Biol 23:e3003149, computed MRIQC's anatomical image-quality metrics
(IQMs; Esteban et al. 2017, PLoS One 12:e0184661) on every IXI T1w image, nondefaced and defaced
with PyDeface, and published them (S2 Data: 579 subjects x 2 conditions, three sites). They found
the IQMs "mostly insensitive" to defacing: Bland-Altman per IQM (their S7 Data) and a
repeated-measures MANOVA on principal components of the standardised IQMs.

:func:`load_iqms` reads and checks the table and returns the pairs; :func:`iqm_agreement` and
:func:`iqm_multivariate` run :mod:`defacebench.quality.paired` on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import paired
from .ratings import row_location

#: Identifier columns of S2 Data; every other column is an IQM.
ID_COLUMNS = ("bids_name", "sub", "defaced", "site")

#: Columns the table must have besides the IQMs.
REQUIRED_COLUMNS = ("sub", "defaced", "site")


class IQMTableError(ValueError):
    """An IQM table that cannot be analysed; the message names the file, line and column."""


def load_iqms(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Read S2 Data (comma-separated; ``.tsv`` tab-separated) and pair the conditions by subject.

    Returns ``(nondefaced, defaced, site)``: two DataFrames of IQMs indexed by subject (same
    index and columns, sorted by subject) and each subject's site. Raises
    :class:`IQMTableError` for a missing column, ``defaced`` other than 0/1, a value that is not
    a number, a subject without exactly one row per condition, or a subject whose two rows
    disagree on the site.
    """
    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise IQMTableError(f"{path}: line 1 (header): missing column(s) {', '.join(map(repr, missing))}")
    iqms = [c for c in raw.columns if c not in ID_COLUMNS]
    if not iqms:
        raise IQMTableError(f"{path}: line 1 (header): no IQM columns besides {', '.join(ID_COLUMNS)}")
    if raw.empty:
        raise IQMTableError(f"{path}: no rows")
    defaced = raw["defaced"].astype(str).str.strip()
    bad = np.flatnonzero(~defaced.isin(["0", "1"]).to_numpy())
    if bad.size:
        raise IQMTableError(f"{row_location(path, bad[0], 'defaced')}: {raw['defaced'].iloc[bad[0]]!r} is not 0 or 1")
    values = raw[iqms].apply(pd.to_numeric, errors="coerce")
    # an empty cell is a missing value (dropped pair by pair later); text is an error
    not_number = values.isna() & raw[iqms].notna()
    if not_number.to_numpy().any():
        row, col = np.argwhere(not_number.to_numpy())[0]
        raise IQMTableError(f"{row_location(path, row, iqms[col])}: {raw[iqms[col]].iloc[row]!r} is not a number")
    table = pd.concat(
        [raw[["sub", "site"]].apply(lambda s: s.str.strip()), defaced.astype(int).rename("defaced"), values], axis=1
    )
    counts = table.groupby(["sub", "defaced"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    wrong = counts[(counts[0] != 1) | (counts[1] != 1)]
    if not wrong.empty:
        subject = wrong.index[0]
        row = int(np.flatnonzero((table["sub"] == subject).to_numpy())[0])
        raise IQMTableError(
            f"{row_location(path, row, 'sub')}: subject {subject!r} has {int(wrong.loc[subject, 0])} "
            f"nondefaced and {int(wrong.loc[subject, 1])} defaced row(s); need one of each "
            f"({len(wrong)} subject(s) like it)"
        )
    sites = table.groupby("sub")["site"].nunique()
    if (sites > 1).any():
        subject = sites[sites > 1].index[0]
        row = int(np.flatnonzero((table["sub"] == subject).to_numpy())[0])
        raise IQMTableError(
            f"{row_location(path, row, 'site')}: subject {subject!r} has a different site in each condition"
        )
    nondefaced = table[table["defaced"] == 0].set_index("sub")[iqms].sort_index()
    defaced_iqms = table[table["defaced"] == 1].set_index("sub")[iqms].sort_index()
    site = table[table["defaced"] == 0].set_index("sub")["site"].sort_index()
    return nondefaced, defaced_iqms, site


def iqm_agreement(
    nondefaced: pd.DataFrame,
    defaced: pd.DataFrame,
    sd_multiplier: float = paired.LOA_SD_MULTIPLIER,
    n_boot: int = paired.N_BOOTSTRAP,
    seed: int = 0,
) -> pd.DataFrame:
    """Bland-Altman of every IQM, nondefaced minus defaced (one row per IQM; :func:`paired.agreement_table`)."""
    return paired.agreement_table(nondefaced, defaced, key="iqm", sd_multiplier=sd_multiplier, n_boot=n_boot, seed=seed)


def iqm_multivariate(
    nondefaced: pd.DataFrame,
    defaced: pd.DataFrame,
    site: pd.Series,
    n_components="kaiser",
    n_perm: int = paired.N_PERMUTATIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """Hotelling's T^2 on principal components of the standardised IQMs, per site and pooled.

    Subjects with a missing IQM in either condition are left out (the PCA needs complete rows);
    IQMs constant over every image (e.g. ``qi_1``, always 0 in S2 Data) drop out of the PCA.
    """
    complete = nondefaced.notna().all(axis=1) & defaced.notna().all(axis=1)
    table = paired.multivariate_paired_test(
        nondefaced[complete].to_numpy(),
        defaced[complete].to_numpy(),
        groups=site[complete].to_numpy(),
        n_components=n_components,
        n_perm=n_perm,
        seed=seed,
    )
    table["group"] = [g if g == "pooled" else f"site {g}" for g in table["group"]]
    table["n_iqms"] = int((np.vstack([nondefaced[complete], defaced[complete]]).std(axis=0) > 0).sum())
    return table.rename(columns={"group": "sample"})
