"""Paired agreement of measurements taken twice, e.g. on a full and a defaced image.

Generic over what was measured: manual ratings (Provins et al. 2025, PLoS Biol 23:e3003149,
Fig 2 and Table B in S1 Text), MRIQC's image-quality metrics (their S7 Data), or any other
variable computed on two versions of one image. Differences are ``first - second`` (Provins et
al.: nondefaced minus defaced).

- :func:`bland_altman_agreement`: one variable. Bias and limits of agreement (Bland & Altman
  1986, Lancet i:307), the parametric CI of the bias (t, as Bland & Altman 1986 give it) and a
  percentile bootstrap CI (Efron & Tibshirani 1993, ch. 13; seeded), the paired t test and
  ICC(A,1) (McGraw & Wong 1996), the last two from :mod:`defacebench.stats`.
- :func:`agreement_table`: the same for many variables, one row each.
- :func:`multivariate_paired_test`: are the variables jointly unchanged? The variables are
  standardised and reduced by PCA (Pearson 1901; Hotelling 1933), then the paired differences
  of the component scores are tested by Hotelling's T^2 (Hotelling 1931, Ann Math Stat 2:360),
  per group (e.g. site) and pooled. With one within-subject factor of two levels this is the
  repeated-measures MANOVA (its Wilks' lambda is exactly 1 / (1 + T^2 / (n - 1))). A sign-flip
  permutation p value (Good 2005, ch. 3) is given beside the F test, which assumes normality.

Functions are pure: arrays or DataFrames in, dicts or DataFrames out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import stats

#: Bootstrap resamples of the bias CI (Efron & Tibshirani 1993 suggest >= 1000 for percentile CIs).
N_BOOTSTRAP = 10000

#: Sign-flip permutations of the multivariate test.
N_PERMUTATIONS = 10000

#: Limits of agreement: bias -/+ this many SDs of the differences (1.96: the 95 % normal quantile;
#: Bland & Altman 1986 printed the rounded "d -/+ 2s").
LOA_SD_MULTIPLIER = 1.96

AGREEMENT_COLUMNS = (
    "n",
    "bias",
    "sd",
    "loa_low",
    "loa_high",
    "ci_low",
    "ci_high",
    "ci_low_bootstrap",
    "ci_high_bootstrap",
    "t",
    "p",
    "icc",
    "icc_ci_low",
    "icc_ci_high",
    "note",
)

#: Meaning of every column of an agreement table (Markdown legends).
AGREEMENT_LEGEND = {
    "n": "complete pairs",
    "bias": "Bland-Altman bias: mean of first minus second (here nondefaced minus defaced)",
    "sd": "standard deviation of the differences (n - 1)",
    "loa_low": "lower limit of agreement, bias - multiplier x SD",
    "loa_high": "upper limit of agreement, bias + multiplier x SD",
    "ci_low": "lower bound of the parametric (t) CI of the bias",
    "ci_high": "upper bound of the parametric (t) CI of the bias",
    "ci_low_bootstrap": "lower bound of the percentile bootstrap CI of the bias (seeded)",
    "ci_high_bootstrap": "upper bound of the percentile bootstrap CI of the bias (seeded)",
    "t": "paired t statistic of the bias (H0: bias = 0)",
    "p": "two-sided p value of the paired t test",
    "icc": "ICC(A,1) between the two measurements: two-way, absolute agreement, single measures (McGraw & Wong 1996)",
    "icc_ci_low": "lower bound of the CI of ICC(A,1)",
    "icc_ci_high": "upper bound of the CI of ICC(A,1)",
    "note": "why a statistic is missing or special",
}


def bootstrap_mean_ci(values, confidence: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = 0):
    """Percentile bootstrap CI of a mean (Efron & Tibshirani 1993, ch. 13), seeded.

    ``values``: 1-D (one variable) or n x p (the CI of each column, all on the same resamples
    of the n rows). With one seed, a column gets the same CI alone or in a table. Returns
    ``(low, high)``: floats, or arrays of p.
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    if n < 2 or n_boot < 1:
        nan = np.full(values.shape[1:], np.nan) if values.ndim > 1 else float("nan")
        return nan, nan
    drawn = np.random.default_rng(seed).integers(0, n, size=(n_boot, n), dtype=np.int32)
    if values.ndim == 1:
        means = values[drawn].mean(axis=1)
    else:
        # how often each row is drawn per resample: one matrix product then serves every column
        flat = (np.arange(n_boot, dtype=np.int64)[:, None] * n + drawn).ravel()
        counts = np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)
        means = counts @ values / n
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    if values.ndim == 1:
        return float(low), float(high)
    return low, high


def bland_altman_agreement(
    first,
    second,
    sd_multiplier: float = LOA_SD_MULTIPLIER,
    confidence: float = 0.95,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    icc_engine: str = "closed-form",
) -> dict:
    """Agreement of paired measurements, ``first - second``: every column of :data:`AGREEMENT_COLUMNS`.

    Bias, SD and limits from :func:`defacebench.stats.bland_altman` (limits rescaled to
    ``sd_multiplier``), the parametric CI and paired t test from
    :func:`defacebench.stats.paired_t`, ICC(A,1) with its CI from :func:`defacebench.stats.icc`,
    and the bootstrap CI from :func:`bootstrap_mean_ci` (NaN with ``n_boot=0``). Incomplete pairs are
    dropped (``note``).
    """
    x, y, dropped = stats.complete_pairs(first, second)
    # defacebench.stats takes (full, defaced) and reports defaced - full: pass (second, first)
    ba = stats.bland_altman(y, x)
    out = {
        "n": int(x.size),
        "bias": ba["bias"],
        "sd": ba["sd"],
        "loa_low": ba["bias"] - sd_multiplier * ba["sd"],
        "loa_high": ba["bias"] + sd_multiplier * ba["sd"],
    }
    t = stats.paired_t(y, x, confidence)
    out.update({"ci_low": t["ci_low"], "ci_high": t["ci_high"], "t": t["t"], "p": t["pval"]})
    low, high = bootstrap_mean_ci(x - y, confidence, n_boot, seed)
    out.update({"ci_low_bootstrap": low, "ci_high_bootstrap": high})
    icc = stats.icc(x, y, "ICC(A,1)", confidence, engine=icc_engine)
    out.update({"icc": icc["icc"], "icc_ci_low": icc["ci_low"], "icc_ci_high": icc["ci_high"]})
    notes = [f"{dropped} incomplete pair(s) dropped" if dropped else "", ba["note"], t["note"], icc["note"]]
    out["note"] = "; ".join(dict.fromkeys(n for n in notes if n))
    return out


def agreement_table(
    first: pd.DataFrame,
    second: pd.DataFrame,
    key: str = "variable",
    sd_multiplier: float = LOA_SD_MULTIPLIER,
    confidence: float = 0.95,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
    icc_engine: str = "closed-form",
) -> pd.DataFrame:
    """One :func:`bland_altman_agreement` row per column of two aligned DataFrames (rows = pairs).

    ``first`` and ``second`` must have the same index and columns (a bug otherwise). The
    bootstrap CIs of all variables come from one seeded set of resamples.
    """
    if not first.index.equals(second.index) or list(first.columns) != list(second.columns):
        raise ValueError("first and second must have the same index (pairs) and columns (variables)")
    rows = [
        {
            key: column,
            **bland_altman_agreement(
                first[column].to_numpy(float),
                second[column].to_numpy(float),
                sd_multiplier,
                confidence,
                0,
                seed,
                icc_engine,
            ),
        }
        for column in first.columns
    ]
    table = pd.DataFrame(rows, columns=[key, *AGREEMENT_COLUMNS])
    differences = first.to_numpy(float) - second.to_numpy(float)
    complete = np.isfinite(differences).all(axis=0)
    # columns with every pair complete share one set of resamples; the others are resampled alone
    low, high = bootstrap_mean_ci(differences[:, complete], confidence, n_boot, seed)
    table.loc[complete, "ci_low_bootstrap"], table.loc[complete, "ci_high_bootstrap"] = low, high
    for i in np.flatnonzero(~complete):
        d = differences[:, i]
        table.loc[i, ["ci_low_bootstrap", "ci_high_bootstrap"]] = bootstrap_mean_ci(
            d[np.isfinite(d)], confidence, n_boot, seed
        )
    return table


# --------------------------------------------------------------------------- multivariate


def standardised_pca(values, n_components="kaiser") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal component scores of column-standardised ``values`` (rows = observations).

    Columns are centred and scaled to unit SD (a PCA of the correlation matrix); constant
    columns carry no information and are left out. ``n_components``: an int, a fraction of the
    variance to explain (0 < f < 1: the fewest components reaching it), or ``"kaiser"``: the
    components whose eigenvalue exceeds 1, i.e. explain more than one standardised variable
    (Kaiser 1960, Educ Psychol Meas 20:141). Returns ``(scores, explained_variance_ratio,
    kept_columns)``; signs follow the SVD's convention (irrelevant to the tests below).
    """
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("PCA needs finite values (drop incomplete rows first)")
    sd = values.std(axis=0, ddof=1)
    kept = sd > 0
    z = (values[:, kept] - values[:, kept].mean(axis=0)) / sd[kept]
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    eigenvalues = s**2 / (z.shape[0] - 1)
    ratio = eigenvalues / eigenvalues.sum()
    if n_components == "kaiser":
        k = int((eigenvalues > 1.0).sum())
    elif isinstance(n_components, float) and 0 < n_components < 1:
        k = int(np.searchsorted(np.cumsum(ratio), n_components) + 1)
    elif isinstance(n_components, (int, np.integer)) and n_components >= 1:
        k = int(n_components)
    else:
        raise ValueError(f"n_components must be 'kaiser', an int >= 1 or a fraction in (0, 1), got {n_components!r}")
    k = max(1, min(k, s.size))
    return u[:, :k] * s[:k], ratio[:k], np.flatnonzero(kept)


def hotelling_paired(first, second) -> dict:
    """Hotelling's T^2 test that paired multivariate differences ``first - second`` have mean zero.

    Hotelling (1931), Ann Math Stat 2:360: T^2 = n d' S^-1 d (d: mean difference, S: covariance
    of the differences, n - 1), F = (n - k) / (k (n - 1)) T^2 ~ F(k, n - k). Returns ``T2``,
    ``F``, ``df1``, ``df2``, ``p``, ``wilks_lambda`` (= 1 / (1 + T^2 / (n - 1)), the rm-MANOVA
    statistic for one two-level within factor), ``n`` and ``k``.
    """
    d = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    n, k = d.shape
    nan = {
        "T2": np.nan,
        "F": np.nan,
        "df1": float(k),
        "df2": float(n - k),
        "p": np.nan,
        "wilks_lambda": np.nan,
        "n": n,
        "k": k,
    }
    if n <= k:
        return {**nan, "note": f"{n} pairs cannot test {k} components (need n > k)"}
    mean = d.mean(axis=0)
    cov = np.cov(d, rowvar=False, ddof=1).reshape(k, k)
    try:
        t2 = float(n * mean @ np.linalg.solve(cov, mean))
    except np.linalg.LinAlgError:
        return {**nan, "note": "the differences' covariance is singular"}
    f = (n - k) / (k * (n - 1)) * t2
    return {
        "T2": t2,
        "F": f,
        "df1": float(k),
        "df2": float(n - k),
        "p": float(sps.f.sf(f, k, n - k)),
        "wilks_lambda": 1.0 / (1.0 + t2 / (n - 1)),
        "n": n,
        "k": k,
        "note": "",
    }


def signflip_pvalue(first, second, n_perm: int = N_PERMUTATIONS, seed: int = 0) -> float:
    """Permutation p value of Hotelling's T^2 by flipping the sign of whole pairs (seeded).

    Under H0 (no systematic difference, differences symmetric about 0) every pair's difference
    is as likely negated. T^2 is monotone in u = m' C^-1 m (m: mean difference, C: the sum of
    d d', which sign flips leave unchanged), since T^2 = n (n - 1) u / (1 - n u); so only u is
    recomputed per permutation. p = (1 + #{u* >= u}) / (1 + n_perm) (Phipson & Smyth 2010).
    """
    d = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    n = d.shape[0]
    C = d.T @ d
    try:
        C_inv = np.linalg.inv(C)
    except np.linalg.LinAlgError:
        return float("nan")
    observed_mean = d.mean(axis=0)
    u_observed = observed_mean @ C_inv @ observed_mean
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, n))
    means = signs @ d / n
    u = np.einsum("ij,jk,ik->i", means, C_inv, means)
    # tolerance: the identity permutation must count as "at least as extreme" despite rounding
    return float((1 + np.sum(u >= u_observed * (1 - 1e-12))) / (1 + n_perm))


def multivariate_paired_test(
    first,
    second,
    groups=None,
    n_components="kaiser",
    n_perm: int = N_PERMUTATIONS,
    seed: int = 0,
    pooled_label: str = "pooled",
) -> pd.DataFrame:
    """PCA on the standardised variables of both conditions, then :func:`hotelling_paired` per group and pooled.

    ``first`` and ``second``: n pairs x p variables (rows aligned, complete); ``groups``: n
    labels (e.g. acquisition site) or None. One PCA is fitted on all 2n observations, so every
    group is tested on the same components. Returns one row per group, then ``pooled_label``:
    ``group``, ``n``, ``k`` (components), ``variance_explained``, ``T2``, ``F``, ``df1``,
    ``df2``, ``p``, ``wilks_lambda``, ``p_signflip``, ``note``.
    """
    a = np.asarray(first, dtype=float)
    b = np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"first and second must be n x p arrays of one shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    scores, ratio, _ = standardised_pca(np.vstack([a, b]), n_components)
    sa, sb = scores[:n], scores[n:]
    labels = np.full(n, pooled_label, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    selections = [(g, labels == g) for g in sorted(set(labels), key=str)] if groups is not None else []
    selections.append((pooled_label, np.ones(n, dtype=bool)))
    rows = []
    for label, keep in selections:
        test = hotelling_paired(sa[keep], sb[keep])
        p_perm = signflip_pvalue(sa[keep], sb[keep], n_perm, seed) if np.isfinite(test["T2"]) else float("nan")
        rows.append(
            {
                "group": str(label),
                "n": int(keep.sum()),
                "k": scores.shape[1],
                "variance_explained": float(ratio.sum()),
                **{c: test[c] for c in ("T2", "F", "df1", "df2", "p", "wilks_lambda")},
                "p_signflip": p_perm,
                "note": test["note"],
            }
        )
    return pd.DataFrame(rows)
