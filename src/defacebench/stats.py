"""Agreement statistics between measurements on full and defaced images.

de Sitter et al. (2020) compared each defacing method with the full image by the
intraclass correlation coefficient for absolute agreement, single measures
(ICC(A,1), McGraw & Wong 1996; ICC(2,1) in Shrout & Fleiss 1979), and by paired
t tests. We add Bland-Altman limits of agreement (Bland & Altman 1986), the
Wilcoxon signed-rank test (Wilcoxon 1945) and McNemar's exact test for paired
failure rates (McNemar 1947).

Every function takes plain arrays and returns a dict; with too few cases it
returns NaNs and a ``note`` instead of raising, so a cohort where defacing broke
most analyses still gets a (mostly empty) table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

ICC_KINDS = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)")


def _nan_result(keys, note):
    out = {k: float("nan") for k in keys}
    out["note"] = note
    return out


def anova_mean_squares(ratings: np.ndarray) -> dict:
    """Two-way ANOVA mean squares of an n targets x k raters matrix (no missing values).

    Returns MSR (between targets), MSC (between raters), MSE (residual) and MSW
    (within targets, the one-way residual), with n and k.
    """
    x = np.asarray(ratings, dtype=float)
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((x - grand) ** 2).sum()
    ss_error = ss_total - ss_rows - ss_cols
    return {
        "n": n,
        "k": k,
        "MSR": ss_rows / (n - 1),
        "MSC": ss_cols / (k - 1),
        "MSE": ss_error / ((n - 1) * (k - 1)),
        "MSW": (ss_cols + ss_error) / (n * (k - 1)),
    }


def icc_matrix(ratings, kind: str = "ICC(A,1)", confidence: float = 0.95) -> dict:
    """Intraclass correlation of an n x k ratings matrix, with its confidence interval.

    ``kind`` is ``ICC(1,1)`` (one-way random), ``ICC(A,1)`` (two-way, absolute
    agreement) or ``ICC(C,1)`` (two-way, consistency), single measures, after
    McGraw & Wong (1996), Psychol Methods 1:30-46, Table 4 and its CI formulas;
    identical to Shrout & Fleiss (1979) ICC(1,1), ICC(2,1) and ICC(3,1).
    Returns ``icc``, ``ci_low``, ``ci_high``, ``F``, ``df1``, ``df2`` and ``pval``
    (H0: ICC = 0).
    """
    keys = ("icc", "ci_low", "ci_high", "F", "df1", "df2", "pval")
    if kind not in ICC_KINDS:
        raise ValueError(f"unknown ICC kind {kind!r}; choose from {ICC_KINDS}")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError("ratings must be an n targets x k raters matrix with k >= 2")
    if np.isnan(x).any():
        raise ValueError("ratings contain missing values; use complete cases")
    if x.shape[0] < 2:
        return _nan_result(keys, f"ICC needs at least 2 cases, got {x.shape[0]}")
    ms = anova_mean_squares(x)
    n, k, msr, msc, mse, msw = ms["n"], ms["k"], ms["MSR"], ms["MSC"], ms["MSE"], ms["MSW"]
    alpha = 1.0 - confidence
    if kind == "ICC(1,1)":
        denominator_ms, df2 = msw, n * (k - 1)
    else:
        denominator_ms, df2 = mse, (n - 1) * (k - 1)
    df1 = n - 1
    if denominator_ms <= 0 or msr <= 0:
        return _nan_result(keys, "no variance between or within cases (constant data)")
    f_value = msr / denominator_ms
    pval = float(sps.f.sf(f_value, df1, df2))
    if kind == "ICC(1,1)":
        icc = (msr - msw) / (msr + (k - 1) * msw)
    elif kind == "ICC(C,1)":
        icc = (msr - mse) / (msr + (k - 1) * mse)
    else:
        icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    if kind in ("ICC(1,1)", "ICC(C,1)"):
        f_low = f_value / sps.f.ppf(1 - alpha / 2, df1, df2)
        f_high = f_value * sps.f.ppf(1 - alpha / 2, df2, df1)
        low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
    else:
        a = k * icc / (n * (1 - icc))
        b = 1 + k * icc * (n - 1) / (n * (1 - icc))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        f_low = sps.f.ppf(1 - alpha / 2, n - 1, v)
        f_high = sps.f.ppf(1 - alpha / 2, v, n - 1)
        low = n * (msr - f_low * mse) / (f_low * (k * msc + (k * n - k - n) * mse) + n * msr)
        high = n * (f_high * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_high * msr)
    return {"icc": float(icc), "ci_low": float(low), "ci_high": float(high), "F": float(f_value),
            "df1": float(df1), "df2": float(df2), "pval": pval, "note": ""}


def icc(full, defaced, kind: str = "ICC(A,1)", confidence: float = 0.95) -> dict:
    """ICC between paired measurements on full and defaced images (the k = 2 case of :func:`icc_matrix`)."""
    return icc_matrix(np.column_stack([np.asarray(full, float), np.asarray(defaced, float)]), kind, confidence)


def icc_pingouin(ratings, kind: str = "ICC(A,1)") -> float:
    """The same ICC from pingouin (Vallat 2018, JOSS 3:1026), for cross-checking :func:`icc_matrix`."""
    import pingouin as pg

    x = np.asarray(ratings, dtype=float)
    long = pd.DataFrame(
        [(i, j, x[i, j]) for i in range(x.shape[0]) for j in range(x.shape[1])],
        columns=["target", "rater", "rating"],
    )
    table = pg.intraclass_corr(long, targets="target", raters="rater", ratings="rating")
    return float(table.set_index("Type").loc[kind, "ICC"])


def paired_t(full, defaced, confidence: float = 0.95) -> dict:
    """Paired t test of defaced minus full (Student 1908), with the mean difference and its CI."""
    keys = ("t", "df", "pval", "mean_diff", "ci_low", "ci_high")
    d = np.asarray(defaced, float) - np.asarray(full, float)
    n = d.size
    if n < 2:
        return _nan_result(keys, f"paired t test needs at least 2 cases, got {n}")
    mean, sd = d.mean(), d.std(ddof=1)
    half = sps.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / np.sqrt(n)
    if sd == 0:
        return {**_nan_result(keys, "all differences are equal"), "mean_diff": float(mean),
                "ci_low": float(mean), "ci_high": float(mean), "df": float(n - 1)}
    t = mean / (sd / np.sqrt(n))
    return {"t": float(t), "df": float(n - 1), "pval": float(2 * sps.t.sf(abs(t), n - 1)),
            "mean_diff": float(mean), "ci_low": float(mean - half), "ci_high": float(mean + half), "note": ""}


def bland_altman(full, defaced) -> dict:
    """Bland-Altman bias and 95 % limits of agreement of defaced minus full (Bland & Altman 1986, Lancet i:307)."""
    keys = ("bias", "sd", "loa_low", "loa_high")
    d = np.asarray(defaced, float) - np.asarray(full, float)
    if d.size < 2:
        return _nan_result(keys, f"limits of agreement need at least 2 cases, got {d.size}")
    bias, sd = d.mean(), d.std(ddof=1)
    return {"bias": float(bias), "sd": float(sd), "loa_low": float(bias - 1.96 * sd),
            "loa_high": float(bias + 1.96 * sd), "note": ""}


def wilcoxon(full, defaced) -> dict:
    """Wilcoxon signed-rank test of defaced against full (Wilcoxon 1945), two-sided."""
    d = np.asarray(defaced, float) - np.asarray(full, float)
    if d.size < 2:
        return _nan_result(("statistic", "pval"), f"signed-rank test needs at least 2 cases, got {d.size}")
    if np.all(d == 0):
        return {"statistic": 0.0, "pval": float("nan"), "note": "all differences are zero"}
    result = sps.wilcoxon(d, zero_method="wilcox")
    return {"statistic": float(result.statistic), "pval": float(result.pvalue), "note": ""}


def mcnemar_exact(failed_full, failed_defaced) -> dict:
    """McNemar's exact test for paired failure indicators (McNemar 1947, Psychometrika 12:153).

    ``b`` counts subjects failing on the full image only, ``c`` on the defaced
    image only; the two-sided exact p value is the binomial test of b against
    b + c trials with p = 0.5 (1 when there are no discordant pairs).
    """
    full = np.asarray(failed_full, bool)
    defaced = np.asarray(failed_defaced, bool)
    b = int((full & ~defaced).sum())
    c = int((~full & defaced).sum())
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "pval": p}
