"""Linear mixed models with crossed random intercepts, fitted by maximum likelihood on dense matrices.

Provins et al. (2025), PLoS Biol 23:e3003149, model manual quality ratings as
``rating ~ defaced + (1|subject) + (1|rater)`` and test the defacing term with a likelihood-ratio
test between two maximum-likelihood (not REML) fits, as lme4's ``anova`` does. This module fits
that family exactly: random intercepts for any number of crossed (or nested) grouping factors,

    y = X beta + sum_k Z_k u_k + e,   u_k ~ N(0, sigma^2 theta_k^2 I),   e ~ N(0, sigma^2 I),

by the profiled deviance of Bates, Maechler, Bolker & Walker (2015), J Stat Softw 67(1)
(lme4's formulation): for relative standard deviations theta, with Lambda = diag(theta_k) and
L L' = Lambda Z'Z Lambda + I (Cholesky), beta-hat and sigma-hat have closed forms and

    -2 log L(theta) = log|L|^2 + n (1 + log(2 pi r^2(theta) / n)),

where r^2 is the penalised residual sum of squares. Only q x q matrices (q = number of random
effects, 189 for 185 subjects and 4 raters) enter, and by block elimination only the small
factors' part is factorised, so one evaluation takes about a millisecond or less. theta is optimised
with bounds theta >= 0 (a variance may be exactly zero), as lme4 does. statsmodels' ``MixedLM``
with variance components fits the same model, more slowly (5 s for one fit of the 1,480 published
ratings; 70 s for the pair on a loaded 2-core machine, against 0.9 s here); :func:`fit_statsmodels`
runs it for cross-checks (tests/test_provins2025.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize
from scipy import stats as sps


@dataclass
class MixedFit:
    """A fitted random-intercepts model.

    ``params`` and ``bse``: fixed effects and their standard errors (from sigma^2 (X'V^-1 X)^-1,
    the ML estimate); ``variances``: each grouping factor's random-intercept variance, and
    ``residual_variance``; ``llf``: maximised log-likelihood (ML, or REML when ``reml``).
    """

    params: dict
    bse: dict
    variances: dict
    residual_variance: float
    llf: float
    n_obs: int
    n_groups: dict
    reml: bool
    converged: bool
    engine: str
    message: str = ""
    extra: dict = field(default_factory=dict)


def _codes(labels) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if codes.size else 0


class _Deviance:
    """The profiled deviance of one dataset, with the cross-products computed once.

    The factor with the most levels goes first: its block of Lambda Z'Z Lambda + I is diagonal
    (each observation belongs to one level), so the q x q system reduces by block elimination to
    its Schur complement over the other factors' levels (4 x 4 for the raters here) instead of a
    189 x 189 Cholesky factorisation.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, factors: dict[str, np.ndarray], reml: bool):
        self.n, self.p = X.shape
        self.reml = reml
        self.names = list(factors)
        self.order = sorted(range(len(self.names)), key=lambda i: -_codes(factors[self.names[i]])[1])
        blocks, self.sizes = [], []
        for i in self.order:
            codes, levels = _codes(factors[self.names[i]])
            Z = np.zeros((self.n, levels))
            Z[np.arange(self.n), codes] = 1.0
            blocks.append(Z)
            self.sizes.append(levels)
        Z = np.hstack(blocks) if blocks else np.zeros((self.n, 0))
        Xy = np.column_stack([X, y])
        self.q1 = self.sizes[0] if self.sizes else 0
        ZtZ = Z.T @ Z
        self.counts1 = np.diag(ZtZ)[: self.q1].copy()
        self.Z1tZ2 = ZtZ[: self.q1, self.q1 :]
        self.Z2tZ2 = ZtZ[self.q1 :, self.q1 :]
        self.ZtXy = Z.T @ Xy
        self.XytXy = Xy.T @ Xy

    def solve(self, theta_by_name: np.ndarray) -> dict:
        theta = np.asarray(theta_by_name, float)[self.order]
        p = self.p
        if self.sizes:
            lam = np.repeat(theta, self.sizes)
            lam1, lam2 = lam[: self.q1], lam[self.q1 :]
            a = lam1**2 * self.counts1 + 1.0  # the diagonal block A11
            A12 = lam1[:, None] * self.Z1tZ2 * lam2[None, :]
            b = lam[:, None] * self.ZtXy  # Lambda Z' [X y]
            b1, b2 = b[: self.q1], b[self.q1 :]
            G = b1.T @ (b1 / a[:, None])  # b1' A11^-1 b1
            logdet = float(np.log(a).sum())
            if lam2.size:
                S = np.eye(lam2.size) + lam2[:, None] * self.Z2tZ2 * lam2[None, :] - A12.T @ (A12 / a[:, None])
                # numpy rather than scipy for these few-by-few matrices: less overhead per call
                chol = np.linalg.cholesky(S)
                w = np.linalg.solve(chol, b2 - A12.T @ (b1 / a[:, None]))
                G = G + w.T @ w
                logdet += 2.0 * float(np.log(np.diag(chol)).sum())
            M = self.XytXy - G  # [X y]' V^-1 [X y]
        else:
            M, logdet = self.XytXy, 0.0
        XtVX, XtVy, ytVy = M[:p, :p], M[:p, p], M[p, p]
        beta = np.linalg.solve(XtVX, XtVy)
        r2 = ytVy - beta @ XtVy
        if self.reml:
            dof = self.n - p
            _, logdet_x = np.linalg.slogdet(XtVX)
            deviance = logdet + logdet_x + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
            sigma2 = r2 / dof
        else:
            deviance = logdet + self.n * (1.0 + np.log(2.0 * np.pi * r2 / self.n))
            sigma2 = r2 / self.n
        return {"deviance": float(deviance), "beta": beta, "sigma2": float(sigma2), "XtVX": XtVX}

    def __call__(self, theta: np.ndarray) -> float:
        return self.solve(theta)["deviance"]

    def levels(self) -> dict[str, int]:
        return {self.names[i]: size for i, size in zip(self.order, self.sizes)}


def fit_random_intercepts(
    y, X, factors: dict, names: list[str] | None = None, reml: bool = False, starts=(1.0,)
) -> MixedFit:
    """Fit ``y ~ X + (1|factor_1) + ... + (1|factor_K)`` by ML (default) or REML.

    ``y``: n responses; ``X``: n x p fixed-effects design (include the intercept column);
    ``factors``: name -> n group labels, one random intercept per level (crossed or nested);
    ``names``: the p column names of ``X``. theta is optimised from each value of ``starts``
    (the same relative SD for every factor) by Powell's derivative-free method with bounds
    (Powell 1964; it reaches theta = 0 exactly where the optimum lies there, as lme4's bounded
    optimiser does) and the best optimum kept. One start at theta = 1, as lme4's, found the
    same optimum as starts at 0.25, 1 and 4 on the published ratings (log-likelihoods within 2e-10).

    Raises ``ValueError`` for inputs a model cannot be fitted to (NaNs, a rank-deficient ``X``,
    fewer observations than parameters).
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.size:
        raise ValueError(f"y must be 1-D and X n x p with the same n, got {y.shape} and {X.shape}")
    if not (np.isfinite(y).all() and np.isfinite(X).all()):
        raise ValueError("y and X must be finite (drop missing values first)")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError("the fixed-effects design X is rank-deficient")
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    factors = {k: np.asarray(v) for k, v in factors.items()}
    if y.size <= X.shape[1] + len(factors):
        raise ValueError(
            f"{y.size} observations cannot identify {X.shape[1]} fixed effects and {len(factors)} variance component(s)"
        )
    deviance = _Deviance(y, X, factors, reml)
    best = None
    for start in starts if factors else ():
        res = optimize.minimize(
            deviance,
            np.full(len(factors), float(start)),
            method="Powell",
            bounds=[(0.0, None)] * len(factors),
            options={"xtol": 1e-6, "ftol": 1e-10, "maxfev": 20000},
        )
        if best is None or res.fun < best.fun:
            best = res
    theta = best.x if best is not None else np.zeros(0)
    sol = deviance.solve(theta)
    sigma2 = sol["sigma2"]
    cov = sigma2 * linalg.inv(sol["XtVX"])
    return MixedFit(
        params=dict(zip(names, map(float, sol["beta"]))),
        bse=dict(zip(names, map(float, np.sqrt(np.diag(cov))))),
        variances={k: float(sigma2 * t**2) for k, t in zip(deviance.names, theta)},
        residual_variance=float(sigma2),
        llf=-0.5 * sol["deviance"],
        n_obs=int(y.size),
        n_groups=deviance.levels(),
        reml=reml,
        converged=bool(best.success) if best is not None else True,
        engine="dense-ml",
        message=str(best.message) if best is not None else "no random effects: ordinary least squares",
        extra={"theta": [float(t) for t in theta]},
    )


def fit_statsmodels(y, X, factors: dict, names: list[str] | None = None, reml: bool = False) -> MixedFit:
    """The same model by statsmodels' ``MixedLM`` (Seabold & Perktold 2010), for cross-checks.

    Crossed random intercepts are variance components within a single all-encompassing group
    (``groups`` constant, ``re_formula="0"``, one ``vc_formula`` entry per factor).
    """
    import pandas as pd
    import statsmodels.formula.api as smf

    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    names = list(names) if names is not None else [f"x{i}" for i in range(X.shape[1])]
    data = pd.DataFrame({f"f{i}": np.asarray(v).astype(str) for i, v in enumerate(factors.values())})
    vc = {name: f"0 + C(f{i})" for i, name in enumerate(factors)}
    model = smf.mixedlm(
        "y ~ 0 + " + " + ".join(f"X{i}" for i in range(X.shape[1])),
        data.assign(y=y, g=1, **{f"X{i}": X[:, i] for i in range(X.shape[1])}),
        groups="g",
        re_formula="0",
        vc_formula=vc,
    )
    res = model.fit(reml=reml)
    scale = float(res.scale)
    vcomp = dict(zip(model.exog_vc.names, map(float, res.vcomp)))
    return MixedFit(
        params=dict(zip(names, map(float, res.fe_params))),
        bse=dict(zip(names, map(float, res.bse_fe))),
        variances={k: vcomp[k] for k in factors},
        residual_variance=scale,
        llf=float(res.llf),
        n_obs=int(y.size),
        n_groups={k: int(np.unique(np.asarray(v).astype(str)).size) for k, v in factors.items()},
        reml=reml,
        converged=bool(res.converged),
        engine="statsmodels",
    )


FIT_ENGINES = {"dense-ml": fit_random_intercepts, "statsmodels": fit_statsmodels}


def likelihood_ratio_test(full: MixedFit, reduced: MixedFit, df: int) -> dict:
    """Likelihood-ratio test of nested ML fits: chi2 = 2 (llf_full - llf_reduced) on ``df`` degrees of freedom.

    Wilks (1938), Ann Math Stat 9:60. REML fits with different fixed effects are not comparable,
    so both fits must be ML. A negative statistic (an optimiser that stopped short) is reported
    as it is, with p = 1.
    """
    if full.reml or reduced.reml:
        raise ValueError("likelihood-ratio tests of fixed effects need ML fits (reml=False)")
    chi2 = 2.0 * (full.llf - reduced.llf)
    return {"chi2": float(chi2), "df": int(df), "p": float(sps.chi2.sf(chi2, df)) if chi2 > 0 else 1.0}
