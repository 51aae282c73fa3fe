"""Agreement statistics between measurements on full and defaced images.

de Sitter et al. (2020), Eur Radiol 30:1062, compared each defacing method with
the full image by the intraclass correlation coefficient for absolute
agreement, single measures (ICC(A,1), McGraw & Wong 1996; ICC(2,1) in Shrout &
Fleiss 1979), and by paired t tests. We add Bland-Altman limits of agreement
(Bland & Altman 1986), the Wilcoxon signed-rank test (Wilcoxon 1945) and
McNemar's exact test for paired failure rates (McNemar 1947).

Every function takes plain arrays and returns a dict with the number of pairs
used (``n``) and a ``note``. Pairs with a missing (NaN) value are dropped, so the
functions work on complete cases. With too few cases, or data without the
variance a statistic needs, they return NaNs and say why in ``note`` instead of
raising: a cohort where defacing broke most analyses still gets a (mostly
empty) table. Malformed input (arrays of different lengths) is a bug and raises.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy import stats as sps

#: ICC forms supported, named as in McGraw & Wong (1996) and pingouin 0.7.
ICC_KINDS = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)")

#: ICC implementations: pingouin (Vallat 2018) and our closed form from the ANOVA mean squares.
ICC_ENGINES = ("pingouin", "closed-form")

#: pingouin 0.7's two-way ANOVA refuses fewer ratings (n x k) than this (an assert in ``anova2``).
PINGOUIN_MIN_RATINGS = 5

#: Two-sided 95 % normal quantile used for Bland-Altman limits of agreement (as in the 1986 paper).
BLAND_ALTMAN_Z = 1.96


def _nan_result(keys, note: str, n: int) -> dict:
    out = {k: float("nan") for k in keys}
    out["n"] = n
    out["note"] = note
    return out


def complete_pairs(full, defaced) -> tuple[np.ndarray, np.ndarray, int]:
    """The pairs where both values are finite, and how many pairs were dropped.

    Raises ``ValueError`` when the arrays are not 1-D of the same length (a bug
    in the caller, not a study result).
    """
    x = np.asarray(full, dtype=float)
    y = np.asarray(defaced, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"full and defaced must be 1-D arrays of equal length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], int((~keep).sum())


def _dropped_note(dropped: int) -> str:
    return f"{dropped} incomplete pair(s) dropped" if dropped else ""


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# --------------------------------------------------------------------------- ICC


def anova_mean_squares(ratings) -> dict:
    """Two-way ANOVA mean squares of an n targets x k raters matrix (no missing values).

    Returns ``MSR`` (between targets, rows), ``MSC`` (between raters, columns),
    ``MSE`` (residual of the two-way model) and ``MSW`` (within targets: the
    residual of the one-way model), with ``n`` and ``k`` (Shrout & Fleiss 1979,
    Table 1; McGraw & Wong 1996, Table 2). The residual sum of squares is summed
    from the residuals themselves rather than by subtraction, so identical
    columns give exactly zero.
    """
    x = np.asarray(ratings, dtype=float)
    n, k = x.shape
    grand = x.mean()
    row_means = x.mean(axis=1, keepdims=True)
    col_means = x.mean(axis=0, keepdims=True)
    ss_rows = k * ((row_means - grand) ** 2).sum()
    ss_cols = n * ((col_means - grand) ** 2).sum()
    ss_error = ((x - row_means - col_means + grand) ** 2).sum()
    ss_within = ((x - row_means) ** 2).sum()
    return {
        "n": n,
        "k": k,
        "MSR": ss_rows / (n - 1),
        "MSC": ss_cols / (k - 1),
        "MSE": ss_error / ((n - 1) * (k - 1)),
        "MSW": ss_within / (n * (k - 1)),
    }


def _icc_closed_form(x: np.ndarray, kind: str, confidence: float) -> dict:
    """ICC, its F test and CI from the mean squares (McGraw & Wong 1996, Tables 4 and 7-8).

    ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW)                      [Case 1]
    ICC(C,1) = (MSR - MSE) / (MSR + (k-1) MSE)                      [Case 3, consistency]
    ICC(A,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)  [Case 2A, absolute agreement]

    The ICC(A,1) interval uses Satterthwaite's approximate degrees of freedom
    ``v`` (McGraw & Wong 1996, Table 7; Shrout & Fleiss 1979, eq. 11).
    Assumes the error mean square is positive (callers check).
    """
    ms = anova_mean_squares(x)
    n, k, msr, msc, mse, msw = ms["n"], ms["k"], ms["MSR"], ms["MSC"], ms["MSE"], ms["MSW"]
    alpha = 1.0 - confidence
    df1 = n - 1
    if kind == "ICC(1,1)":
        error_ms, df2 = msw, n * (k - 1)
    else:
        error_ms, df2 = mse, (n - 1) * (k - 1)
    f_value = msr / error_ms
    pval = float(sps.f.sf(f_value, df1, df2))
    if kind == "ICC(A,1)":
        icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        a = k * icc / (n * (1 - icc))
        b = 1 + k * icc * (n - 1) / (n * (1 - icc))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        f_star_low = sps.f.ppf(1 - alpha / 2, n - 1, v)
        f_star_high = sps.f.ppf(1 - alpha / 2, v, n - 1)
        low = n * (msr - f_star_low * mse) / (f_star_low * (k * msc + (k * n - k - n) * mse) + n * msr)
        high = n * (f_star_high * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_star_high * msr)
    else:
        icc = (msr - error_ms) / (msr + (k - 1) * error_ms)
        f_low = f_value / sps.f.ppf(1 - alpha / 2, df1, df2)
        f_high = f_value * sps.f.ppf(1 - alpha / 2, df2, df1)
        low, high = (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1)
    return {
        "icc": float(icc),
        "ci_low": float(low),
        "ci_high": float(high),
        "F": float(f_value),
        "df1": float(df1),
        "df2": float(df2),
        "pval": pval,
    }


@contextmanager
def _pingouin_full_precision():
    """pingouin 0.7 rounds the CI95 column to 2 decimals by default; switch that off meanwhile."""
    import pingouin as pg

    saved = dict(pg.options)
    pg.options["round"] = None
    pg.options["round.column.CI95"] = None
    try:
        yield pg
    finally:
        pg.options.clear()
        pg.options.update(saved)


def _icc_pingouin(x: np.ndarray, kind: str, confidence: float) -> dict:
    """The same ICC from ``pingouin.intraclass_corr`` (Vallat 2018, JOSS 3:1026), 95 % CI only."""
    if not np.isclose(confidence, 0.95):
        raise ValueError("pingouin.intraclass_corr only reports a 95 % CI; use engine='closed-form'")
    n, k = x.shape
    long = pd.DataFrame(
        {
            "target": np.repeat(np.arange(n), k),
            "rater": np.tile(np.arange(k), n),
            "rating": x.ravel(),
        }
    )
    with _pingouin_full_precision() as pg, warnings.catch_warnings():
        # pingouin 0.7 uses pandas idioms that pandas 3 deprecates; not our concern here.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        # It computes all six ICC forms at once; one we did not ask for may divide by zero
        # (e.g. MSE = 0 while ICC(1,1) is requested).
        warnings.simplefilter("ignore", category=RuntimeWarning)
        table = pg.intraclass_corr(long, targets="target", raters="rater", ratings="rating")
    row = table.set_index("Type").loc[kind]
    low, high = np.asarray(row["CI95"], dtype=float)
    return {
        "icc": float(row["ICC"]),
        "ci_low": float(low),
        "ci_high": float(high),
        "F": float(row["F"]),
        "df1": float(row["df1"]),
        "df2": float(row["df2"]),
        "pval": float(row["pval"]),
    }


def icc_matrix(ratings, kind: str = "ICC(A,1)", confidence: float = 0.95, engine: str = "pingouin") -> dict:
    """Intraclass correlation of an n targets x k raters matrix, with its CI and F test.

    ``kind`` is ``"ICC(1,1)"`` (one-way random effects), ``"ICC(A,1)"``
    (two-way, absolute agreement) or ``"ICC(C,1)"`` (two-way, consistency),
    single measures, after McGraw & Wong (1996), Psychol Methods 1:30-46; they
    equal Shrout & Fleiss (1979), Psychol Bull 86:420, ICC(1,1), ICC(2,1) and
    ICC(3,1). de Sitter et al. (2020) used ICC(A,1).

    ``engine`` chooses the implementation: ``"pingouin"``
    (``pingouin.intraclass_corr``, at full precision) or ``"closed-form"``
    (:func:`_icc_closed_form`, numpy/scipy from the ANOVA mean squares); the
    tests check that they agree. Rows with a missing value are dropped first.

    Degenerate data are handled the same way by both engines, before either runs:

    - fewer than 2 complete rows: NaNs, ``note`` says so;
    - all values equal (no variance at all), or all row means equal (no
      variance between targets, where the CI formulas break down): NaNs, ``note`` says so;
    - no within-target disagreement (error mean square 0: e.g. defacing did not
      change a single value): ICC(1,1) and ICC(C,1) are 1 with CI [1, 1]; so is
      ICC(A,1) unless the raters differ by a constant, in which case it is
      computed by the closed form (finite, < 1). ``F`` is infinite, ``pval`` 0;
    - fewer than 5 ratings (2 targets x 2 raters) with ``engine="pingouin"``:
      pingouin refuses them, so the closed form is used and ``engine`` says so.

    Returns ``icc``, ``ci_low``, ``ci_high``, ``F``, ``df1``, ``df2``, ``pval``
    (H0: ICC = 0), ``n`` (targets used), ``note`` and ``engine``.
    """
    keys = ("icc", "ci_low", "ci_high", "F", "df1", "df2", "pval")
    if kind not in ICC_KINDS:
        raise ValueError(f"unknown ICC kind {kind!r}; choose from {ICC_KINDS}")
    if engine not in ICC_ENGINES:
        raise ValueError(f"unknown ICC engine {engine!r}; choose from {ICC_ENGINES}")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be an n targets x k raters matrix with k >= 2, got shape {x.shape}")
    complete = np.isfinite(x).all(axis=1)
    dropped = int((~complete).sum())
    x = x[complete]
    n, k = x.shape
    dropped_note = f"{dropped} incomplete row(s) dropped" if dropped else ""
    if n < 2:
        return {
            **_nan_result(keys, _join(f"ICC needs at least 2 complete cases, got {n}", dropped_note), n),
            "engine": engine,
        }
    ms = anova_mean_squares(x)
    scale = x.var()
    if scale == 0:
        return {
            **_nan_result(keys, _join("all values are equal (constant data): ICC undefined", dropped_note), n),
            "engine": engine,
        }
    if ms["MSR"] <= 1e-12 * scale:
        return {
            **_nan_result(
                keys, _join("no variance between cases (every case has the same mean): ICC undefined", dropped_note), n
            ),
            "engine": engine,
        }
    error_ms = ms["MSW"] if kind == "ICC(1,1)" else ms["MSE"]
    df = {"df1": float(n - 1), "df2": float(n * (k - 1) if kind == "ICC(1,1)" else (n - 1) * (k - 1))}
    if error_ms <= 1e-12 * scale:
        offset = ms["MSC"] > 1e-12 * scale
        if kind == "ICC(A,1)" and offset:
            # Raters differ by an exact constant: the closed form stays finite (pingouin divides 0 by 0).
            with np.errstate(divide="ignore"):
                result = _icc_closed_form(x, kind, confidence)
            note, used = "raters differ only by a constant offset", "closed-form"
        else:
            result = {"icc": 1.0, "ci_low": 1.0, "ci_high": 1.0, "F": float("inf"), "pval": 0.0, **df}
            note = (
                "raters differ only by a constant offset: perfect consistency"
                if offset
                else "identical values in every case: perfect agreement"
            )
            used = engine
        return {**result, "n": n, "note": _join(note, dropped_note), "engine": used}
    if engine == "pingouin" and x.size < PINGOUIN_MIN_RATINGS:
        note = f"closed form used: pingouin's ANOVA needs at least {PINGOUIN_MIN_RATINGS} ratings, got {x.size}"
        return {
            **_icc_closed_form(x, kind, confidence),
            "n": n,
            "note": _join(note, dropped_note),
            "engine": "closed-form",
        }
    compute = _icc_pingouin if engine == "pingouin" else _icc_closed_form
    return {**compute(x, kind, confidence), "n": n, "note": dropped_note, "engine": engine}


def icc(full, defaced, kind: str = "ICC(A,1)", confidence: float = 0.95, engine: str = "pingouin") -> dict:
    """ICC between paired measurements on full and defaced images: the k = 2 case of :func:`icc_matrix`.

    Returns ``icc``, ``ci_low``, ``ci_high``, ``pval``, ``F`` (with ``df1``,
    ``df2``, ``n``, ``note``, ``engine``). Pairs with a missing value are dropped.
    """
    complete_pairs(full, defaced)  # raises on malformed input; icc_matrix drops and counts incomplete pairs
    return icc_matrix(np.column_stack([np.asarray(full, float), np.asarray(defaced, float)]), kind, confidence, engine)


# --------------------------------------------------------------------------- paired tests


def paired_t(full, defaced, confidence: float = 0.95) -> dict:
    """Paired t test of defaced minus full (Student 1908; ``scipy.stats.ttest_rel``).

    Returns ``t``, ``df``, ``pval`` (two-sided), ``mean_diff`` (defaced - full)
    with its CI ``ci_low``/``ci_high``, ``n`` and ``note``. With fewer than 2
    pairs everything is NaN; when every difference is the same the mean
    difference and its (zero-width) CI are reported but t and p are NaN.
    """
    keys = ("t", "df", "pval", "mean_diff", "ci_low", "ci_high")
    x, y, dropped = complete_pairs(full, defaced)
    n = x.size
    if n < 2:
        return _nan_result(
            keys, _join(f"paired t test needs at least 2 complete pairs, got {n}", _dropped_note(dropped)), n
        )
    d = y - x
    mean = float(d.mean())
    if np.ptp(d) == 0:
        return {
            **_nan_result(keys, _join("all differences are equal: t undefined", _dropped_note(dropped)), n),
            "mean_diff": mean,
            "ci_low": mean,
            "ci_high": mean,
            "df": float(n - 1),
        }
    result = sps.ttest_rel(y, x)
    ci = result.confidence_interval(confidence)
    return {
        "t": float(result.statistic),
        "df": float(result.df),
        "pval": float(result.pvalue),
        "mean_diff": mean,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "n": n,
        "note": _dropped_note(dropped),
    }


def bland_altman(full, defaced) -> dict:
    """Bland-Altman bias and 95 % limits of agreement of defaced minus full.

    Bland & Altman (1986), Lancet i:307-310: bias = mean difference, limits =
    bias -/+ 1.96 SD of the differences (SD with n - 1). Returns ``bias``,
    ``sd``, ``loa_low``, ``loa_high``, ``n`` and ``note``.
    """
    keys = ("bias", "sd", "loa_low", "loa_high")
    x, y, dropped = complete_pairs(full, defaced)
    d = y - x
    if d.size < 2:
        return _nan_result(
            keys,
            _join(f"limits of agreement need at least 2 complete pairs, got {d.size}", _dropped_note(dropped)),
            int(d.size),
        )
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    return {
        "bias": bias,
        "sd": sd,
        "loa_low": bias - BLAND_ALTMAN_Z * sd,
        "loa_high": bias + BLAND_ALTMAN_Z * sd,
        "n": int(d.size),
        "note": _dropped_note(dropped),
    }


def wilcoxon(full, defaced) -> dict:
    """Wilcoxon signed-rank test of defaced against full, two-sided (Wilcoxon 1945, Biometrics Bull 1:80).

    ``scipy.stats.wilcoxon`` with ``zero_method="wilcox"`` (zero differences are
    discarded, as in Wilcoxon's original test). When every difference is zero
    the statistic is 0 and ``pval`` NaN with a note, rather than an error.
    Returns ``statistic`` (W, the smaller rank sum), ``pval``, ``n`` (pairs) and ``note``.
    """
    x, y, dropped = complete_pairs(full, defaced)
    d = y - x
    if d.size < 2:
        return _nan_result(
            ("statistic", "pval"),
            _join(f"signed-rank test needs at least 2 complete pairs, got {d.size}", _dropped_note(dropped)),
            int(d.size),
        )
    if np.all(d == 0):
        return {
            "statistic": 0.0,
            "pval": float("nan"),
            "n": int(d.size),
            "note": _join("all differences are zero: signed-rank test undefined", _dropped_note(dropped)),
        }
    result = sps.wilcoxon(d, zero_method="wilcox")
    zeros = int((d == 0).sum())
    return {
        "statistic": float(result.statistic),
        "pval": float(result.pvalue),
        "n": int(d.size),
        "note": _join(f"{zeros} zero difference(s) discarded" if zeros else "", _dropped_note(dropped)),
    }


def mcnemar_exact(failed_full, failed_defaced) -> dict:
    """McNemar's exact test for paired failure indicators (McNemar 1947, Psychometrika 12:153).

    ``b`` counts subjects failing on the full image only, ``c`` on the defaced
    image only. The two-sided exact p value is the binomial test of b in b + c
    trials with probability 0.5 (``scipy.stats.binomtest``); it is 1 when there
    are no discordant pairs. Returns ``b``, ``c``, ``pval``, ``n`` and ``note``.
    """
    full = np.asarray(failed_full, dtype=bool)
    defaced = np.asarray(failed_defaced, dtype=bool)
    if full.ndim != 1 or full.shape != defaced.shape:
        raise ValueError(f"failure indicators must be 1-D arrays of equal length, got {full.shape} and {defaced.shape}")
    b = int((full & ~defaced).sum())
    c = int((~full & defaced).sum())
    if b + c == 0:
        return {"b": 0, "c": 0, "pval": 1.0, "n": int(full.size), "note": "no discordant pairs"}
    return {"b": b, "c": c, "pval": float(sps.binomtest(b, b + c, 0.5).pvalue), "n": int(full.size), "note": ""}
