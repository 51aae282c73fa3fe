"""Anatomical image-quality metrics (IQMs) of a T1w image, after MRIQC.

A re-implementation, written from the definitions of Esteban et al. (2017,
"MRIQC: Advancing the automatic prediction of image quality in MRI from unseen
sites", PLoS One 12:e0184661) and MRIQC's documentation, of the metrics MRIQC
24.0.2 reports for a T1w image; records call it ``defacebench-iqms``, never
MRIQC. Every function takes plain arrays. On the same arrays and masks the values
equal those of MRIQC 24.0.2's own functions (``mriqc.qc.anatomical`` and the
``StructuralQC`` interface) to 1e-6 relative (``bench/bench_iqms.py``), except
where a docstring says otherwise. The masks come from :mod:`.masks`.

MRIQC's conventions kept here so that the numbers are comparable with
published MRIQC tables (Provins et al. 2025, S2 Data):

- tissue statistics are read from the INU-corrected image *harmonised* so that
  the median of eroded white matter is 1000 (:func:`harmonise`), with
  intensities rounded to integers and tissue weights to 3 decimals for the
  weighted quantiles, and reported to 4 decimals (:func:`summary_stats`); SNR,
  CNR, CJV and WM2MAX are computed from those reported statistics;
- EFC and FBER are rounded to 4 decimals;
- FWHM is in voxels, INU statistics are read inside the brain (the hard
  segmentation's support).

Where MRIQC reports a sentinel instead of a value (FBER = -1 with no signal
outside the head, SNRd = -1 with no noise in the air, QI1 = -1 with an empty
air mask, QI2 = 0 with fewer than 1000 air voxels), these functions raise
:class:`MetricUndefined` with the reason, unless asked for MRIQC's sentinel
(``mriqc_sentinels=True``); :func:`image_quality_metrics` records the
undefined metric as NaN with its reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
from scipy import ndimage, optimize, special, stats

from ..records import AnalysisFailure

#: The name every result of this module carries (it is not MRIQC, it follows MRIQC's definitions).
IMPLEMENTATION = "defacebench-iqms"
#: The MRIQC release whose definitions these functions follow and against which they are validated.
REFERENCE = "MRIQC 24.0.2 (Esteban et al. 2017, PLoS One 12:e0184661)"

TISSUES = ("csf", "gm", "wm")
#: The statistics reported for each region (``summary_<region>_<statistic>``), in S2 Data's column order.
SUMMARY_STATISTICS = ("k", "mad", "mean", "median", "n", "p05", "p95", "stdv")
#: The normal distribution's 75th percentile: a normal sample's median absolute deviation over it is its s.d.
MAD_TO_SD = float(stats.norm.ppf(0.75))
#: 1 / sqrt(2 / (4 - pi)): the air's noise s.d. from a Rayleigh-distributed magnitude (Dietrich et al. 2007, eq. A.12).
DIETRICH_FACTOR = math.sqrt((4.0 - math.pi) / 2.0)
#: Harmonised white-matter median (MRIQC's Harmonize interface).
HARMONISED_WM = 1000.0
#: Decimals to which MRIQC reports summary statistics, EFC and FBER.
REPORTED_DECIMALS = 4
#: The glabella and the inion in MNI coordinates (mm), MRIQC's defaults after Mortamet et al. 2009.
GLABELLA_MNI = (0.0, 90.0, -14.0)
INION_MNI = (0.0, -120.0, -14.0)


class MetricUndefined(AnalysisFailure):
    """An IQM that cannot be computed on this image (e.g. no air left after defacing), with the reason."""

    def __init__(self, metric: str, reason: str):
        super().__init__(f"iqm:{metric}", reason)
        self.metric = metric


# --------------------------------------------------------------------------- noise-based measures


def snr(mu_fg: float, sigma_fg: float, n: float) -> float:
    r"""Signal-to-noise ratio within one tissue (Esteban et al. 2017, table 1).

    .. math:: \text{SNR} = \frac{\mu_F}{\sigma_F \sqrt{n / (n - 1)}}

    ``mu_fg`` and ``sigma_fg``: the tissue's median and (weighted) s.d.; ``n``: its
    number of voxels (sum of its partial-volume map), as MRIQC uses them.
    """
    if n <= 1 or sigma_fg <= 0:
        raise MetricUndefined("snr", f"tissue has {n:.0f} voxels and s.d. {sigma_fg}")
    return float(mu_fg / (sigma_fg * math.sqrt(n / (n - 1))))


def snr_dietrich(mu_fg: float, mad_air: float, sigma_air: float, *, mriqc_sentinels: bool = False) -> float:
    r"""SNR with the noise measured in the air around the head (Dietrich et al. 2007, JMRI 26:375, eq. A.12).

    .. math:: \text{SNR}_d = \sqrt{\tfrac{4 - \pi}{2}}\,\frac{\mu_F}{\sigma_\text{air}}

    The factor corrects the s.d. of Rayleigh-distributed magnitude noise. As in
    MRIQC, the air's spread is its MAD (normal-consistent) when above 1, else its
    s.d.; with neither above its floor (1e-3 for the s.d.) there is no noise to
    measure: :class:`MetricUndefined`, or MRIQC's -1 with ``mriqc_sentinels``.
    MRIQC writes the factor as 0.6551364; the exact value differs by 4e-8 relative.
    """
    if mad_air > 1.0:
        return float(DIETRICH_FACTOR * mu_fg / mad_air)
    if sigma_air > 1e-3:
        return float(DIETRICH_FACTOR * mu_fg / sigma_air)
    if mriqc_sentinels:
        return -1.0
    raise MetricUndefined("snrd", f"no noise in the air (MAD {mad_air}, s.d. {sigma_air})")


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float, sigma_gm: float) -> float:
    r"""Contrast-to-noise ratio of GM and WM (Magnotta & Friedman 2006, J Digit Imaging 19:140).

    .. math:: \text{CNR} = \frac{|\mu_\text{GM} - \mu_\text{WM}|}{\sqrt{\sigma_B^2 + \sigma_\text{WM}^2 + \sigma_\text{GM}^2}}

    with :math:`\sigma_B` the s.d. in the air, as MRIQC 24 defines it.
    """
    denominator = math.sqrt(sigma_air**2 + sigma_gm**2 + sigma_wm**2)
    if denominator <= 0:
        raise MetricUndefined("cnr", "no spread in the air or the tissues")
    return float(abs(mu_wm - mu_gm) / denominator)


def cjv(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    r"""Coefficient of joint variation of GM and WM (Ganzetti et al. 2016, Front Neuroinform 10:10).

    .. math:: \text{CJV} = \frac{\sigma_\text{WM} + \sigma_\text{GM}}{|\mu_\text{WM} - \mu_\text{GM}|}

    MRIQC passes the tissues' medians and MADs; so does :func:`image_quality_metrics`.
    """
    if mu_wm == mu_gm:
        raise MetricUndefined("cjv", "GM and WM have the same intensity")
    return float((sigma_wm + sigma_gm) / abs(mu_wm - mu_gm))


def fber(
    image: np.ndarray,
    head_mask: np.ndarray,
    rotation_mask: np.ndarray | None = None,
    *,
    decimals: int | None = REPORTED_DECIMALS,
    mriqc_sentinels: bool = False,
) -> float:
    r"""Foreground-background energy ratio (Shehzad et al. 2015, QAP; Esteban et al. 2017).

    .. math:: \text{FBER} = \frac{\operatorname{median}_{\text{head}} |x|^2}{\operatorname{median}_{\text{air}} |x|^2}

    MRIQC 24 takes medians (not means) of the energy; the air is every voxel
    outside the head mask and outside the rotation (frame) mask. When the air's
    median energy is below 1e-3 (a zero-filled background, as in most IXI scans,
    or a skull-stripped image), the ratio is not defined: :class:`MetricUndefined`,
    or MRIQC's -1 with ``mriqc_sentinels``.
    """
    head = np.asarray(head_mask) > 0
    air = ~head
    if rotation_mask is not None:
        air &= ~(np.asarray(rotation_mask) > 0)
    if not head.any() or not air.any():
        raise MetricUndefined("fber", "empty head or air region")
    foreground = float(np.median(np.abs(image[head]) ** 2))
    background = float(np.median(np.abs(image[air]) ** 2))
    if background < 1e-3:
        if mriqc_sentinels:
            return -1.0
        raise MetricUndefined("fber", f"no signal outside the head (median energy {background:.2g})")
    return _rounded(foreground / background, decimals)


def efc(image: np.ndarray, frame_mask: np.ndarray | None = None, *, decimals: int | None = REPORTED_DECIMALS) -> float:
    r"""Entropy focus criterion (Atkinson et al. 1997, IEEE TMI 16:903), normalised by its maximum.

    .. math::

        E = -\sum_j \frac{x_j}{b} \ln \frac{x_j}{b},\quad b = \sqrt{\textstyle\sum_j x_j^2},\qquad
        \text{EFC} = \frac{E}{E_\text{max}},\quad E_\text{max} = -\sqrt{N}\,\ln\frac{1}{\sqrt{N}}

    over the N voxels outside ``frame_mask`` (MRIQC passes its rotation mask).
    EFC is 1 when all voxels are equal and 0 when one voxel holds all the energy.
    As in MRIQC, 1e-16 is added inside the logarithm so that zero voxels add 0.
    """
    inside = np.ones(image.shape, bool) if frame_mask is None else ~(np.asarray(frame_mask) > 0)
    values = np.asarray(image, np.float64)[inside]
    n_vox = values.size
    if n_vox < 2:
        raise MetricUndefined("efc", f"{n_vox} voxels outside the frame mask")
    energy = math.sqrt(float(np.sum(values**2)))
    if energy == 0:
        raise MetricUndefined("efc", "the image is zero")
    efc_max = n_vox * (1.0 / math.sqrt(n_vox)) * math.log(1.0 / math.sqrt(n_vox))
    entropy = np.sum((values / energy) * np.log((values + 1e-16) / energy))
    return _rounded(entropy / efc_max, decimals)


def wm2max(image: np.ndarray, median_wm: float) -> float:
    r"""White-matter-to-maximum ratio (Esteban et al. 2017): the WM median over the 99.95th percentile of the image.

    .. math:: \text{WM2MAX} = \frac{\operatorname{median}_\text{WM}}{P_{99.95}(X)}

    Values well below 0.6-0.8 point to long bright tails (vessels, fat).
    """
    top = float(np.percentile(np.asarray(image).reshape(-1), 99.95))
    if top <= 0:
        raise MetricUndefined("wm2max", "the image's 99.95th percentile is not positive")
    return float(median_wm / top)


# --------------------------------------------------------------------------- artefacts (Mortamet et al. 2009)


def qi1(air_mask: np.ndarray, artifact_mask: np.ndarray, *, mriqc_sentinels: bool = False) -> float:
    r"""Mortamet's quality index 1 (Mortamet et al. 2009, MRM 62:365): the share of artefactual air voxels.

    .. math:: \text{QI}_1 = \frac{|X_\text{art}|}{|X_\text{air}| + |X_\text{art}|}

    ``air_mask`` is the "hat" without artefacts, ``artifact_mask`` the artefacts
    (:func:`defacebench.quality.masks.artifact_mask`). An empty air mask (the
    image was skull-stripped, or defacing left no air above the nasion-inion
    plane): :class:`MetricUndefined`, or MRIQC's -1 with ``mriqc_sentinels``.
    """
    n_air = int(np.count_nonzero(air_mask))
    n_art = int(np.count_nonzero(artifact_mask))
    if n_air < 1:
        if mriqc_sentinels:
            return -1.0
        raise MetricUndefined("qi_1", "empty air mask")
    return float(n_art / (n_air + n_art))


def gaussian_kde_on_grid(samples: np.ndarray, grid: np.ndarray, bandwidth: float, terms: int = 24) -> np.ndarray:
    """Gaussian kernel density of ``samples`` at the points ``grid`` (the exact sum, computed fast).

    The sum over samples of N(x; x_i, h) is evaluated with a truncated Taylor
    expansion per box of width h (the fast Gauss transform of Greengard & Strain
    1991, SIAM J Sci Stat Comput 12:79): exp(-(x-u)^2/2h^2) = exp(-d^2/2)
    exp(d t) exp(-t^2/2) with d, t the distances of x and u to the box centre in
    units of h, so each box needs only ``terms`` moments. With |t| <= 1/2 the
    neglected terms are below 1e-18 of a kernel's peak: the result equals the
    direct sum (and scikit-learn's ``KernelDensity``) to ~1e-12 relative, in
    milliseconds instead of the minute a tree-based sum takes on 300,000 samples.
    """
    values, counts = np.unique(np.asarray(samples, np.float64), return_counts=True)
    box = np.floor(values / bandwidth).astype(np.int64)
    box_ids, start = np.unique(box, return_index=True)
    centres = (box_ids + 0.5) * bandwidth
    t = values / bandwidth - (box + 0.5)
    weight = counts * np.exp(-0.5 * t**2)
    powers = np.cumprod(np.vstack([np.ones_like(t)] + [t] * (terms - 1)), axis=0)  # t^k, k = 0..terms-1
    moments = np.add.reduceat(powers * weight, start, axis=1)  # (terms, boxes)
    moments /= special.factorial(np.arange(terms))[:, None]
    d = (np.asarray(grid, np.float64)[:, None] - centres[None, :]) / bandwidth  # (grid, boxes)
    series = np.zeros_like(d)
    for k in range(terms - 1, -1, -1):  # Horner's scheme in d
        series = series * d + moments[k][None, :]
    density = np.sum(np.exp(-0.5 * d**2) * series, axis=1)
    return density / (counts.sum() * bandwidth * math.sqrt(2 * math.pi))


#: log of the largest double: scipy's penalty per sample outside the support in a fit.
_LOG_XMAX = float(np.log(np.finfo(float).max))


def chi2_fit(samples: np.ndarray, df: float) -> tuple[float, float, float]:
    """Maximum-likelihood (df, loc, scale) of a chi-squared distribution, as ``scipy.stats.chi2.fit(samples, df)``.

    The same estimator, start and optimiser as scipy's generic ``fit``
    (Nelder-Mead from ``df`` and the moment estimates of loc and scale for one
    degree of freedom, moved below the data when they do not cover it; samples
    outside the support or with a non-finite log-density penalised by
    100 log(max double) each), with the log-likelihood summed over distinct
    values weighted by their counts: scanner intensities take few distinct
    values, so the fit that takes seconds on 300,000 samples takes milliseconds.
    """
    samples = np.asarray(samples, np.float64).ravel()
    if not np.isfinite(samples).all():
        raise ValueError("chi2_fit: samples contain non-finite values")
    values, counts = np.unique(samples, return_counts=True)
    counts = counts.astype(np.float64)
    n = samples.size

    def penalised_nll(theta):
        shape, loc, scale = theta
        if not shape > 0 or scale <= 0:
            return np.inf
        y = (values - loc) / scale
        with np.errstate(divide="ignore", invalid="ignore"):
            logpdf = special.xlogy(shape / 2 - 1, y) - y / 2 - special.gammaln(shape / 2) - np.log(2) * shape / 2
        good = (y >= 0) & np.isfinite(logpdf)
        n_bad = n - counts[good].sum()
        return -float(np.dot(counts[good], logpdf[good])) + n_bad * _LOG_XMAX * 100 + n * math.log(scale)

    # moment estimates for one degree of freedom (mean 1, variance 2), as scipy's _fitstart
    scale0 = math.sqrt(samples.var() / 2.0)
    loc0 = samples.mean() - scale0
    if not np.isfinite(loc0):
        loc0 = 0.0
    if not (np.isfinite(scale0) and scale0 > 0):
        scale0 = 1.0
    if not loc0 < samples.min():
        loc0, scale0 = samples.min() - 0.1 * (samples.max() - samples.min()), 1.0
    shape, loc, scale = optimize.fmin(penalised_nll, (float(df), loc0, scale0), disp=0)
    if not (shape > 0 and scale > 0):
        raise MetricUndefined("qi_2", "the chi-squared fit left the distribution's domain")
    return float(shape), float(loc), float(scale)


#: Seed of MRIQC's QI2 subsample (the legacy NumPy generator, so that the same voxels are drawn).
QI2_SEED = 1191935


def qi2(
    image: np.ndarray,
    hat_mask: np.ndarray,
    *,
    min_voxels: int = 1000,
    max_voxels: int = 300_000,
    coil_elements: int = 32,
    mriqc_sentinels: bool = False,
) -> float:
    r"""Mortamet's quality index 2 (Mortamet et al. 2009, MRM 62:365), as MRIQC 24 computes it.

    The air intensities in ``hat_mask`` (negatives and non-finite values set to
    0) are scaled so that their 99th percentile is 100; at most ``max_voxels`` of
    them are drawn (with replacement, NumPy's legacy generator seeded with
    :data:`QI2_SEED`); their density is estimated with a Gaussian kernel of
    bandwidth 4 on 1000 points over [0, 110] (:func:`gaussian_kde_on_grid`) and a
    chi-squared distribution with ``coil_elements`` degrees of freedom to start is
    fitted to them by maximum likelihood (:func:`chi2_fit`). QI2 is the mean
    absolute difference of the two densities to the right of the density's last
    crossing of half its maximum. Lower is better. MRIQC runs this on the
    original (not INU-corrected) image with the hat mask (air before artefacts
    are removed). Fewer than ``min_voxels`` positive air voxels:
    :class:`MetricUndefined`, or MRIQC's 0 with ``mriqc_sentinels``.
    """
    data = np.nan_to_num(np.asarray(image, np.float64)[np.asarray(hat_mask) > 0], posinf=0.0)
    data[data < 0] = 0
    if np.count_nonzero(data > 0) < min_voxels:
        if mriqc_sentinels:
            return 0.0
        raise MetricUndefined("qi_2", f"fewer than {min_voxels} positive voxels in the air")
    top = float(np.percentile(data, 99))
    if top <= 0:
        raise MetricUndefined("qi_2", "the air's 99th percentile is 0 (zero-filled background)")
    data *= 100 / top
    if len(data) >= max_voxels:
        data = np.random.RandomState(QI2_SEED).choice(data, size=max_voxels)
    grid = np.linspace(0.0, 110, 1000)
    density = gaussian_kde_on_grid(data, grid, bandwidth=4.0)
    tail = int(np.argmax(density[::-1] > density.max() * 0.5))
    shape, loc, scale = chi2_fit(data, coil_elements)
    fitted = stats.chi2.pdf(grid, shape, loc=loc, scale=scale)
    # tail == 0 keeps the whole grid, as MRIQC's slice [-0:] does
    return float(np.abs(density[-tail:] - fitted[-tail:]).mean())


# --------------------------------------------------------------------------- tissue maps


def icv_fractions(partial_volumes: np.ndarray) -> dict[str, float]:
    r"""Intracranial volume fractions of CSF, GM and WM (Esteban et al. 2017): each map's sum over the three.

    .. math:: \text{ICV}^k = \frac{\sum_i p^k_i}{\sum_{k'} \sum_i p^{k'}_i}
    """
    sums = {name: float(np.sum(partial_volumes[k], dtype=np.float64)) for k, name in enumerate(TISSUES)}
    total = sum(sums.values())
    if total <= 0:
        raise MetricUndefined("icvs", "the partial-volume maps are empty")
    return {name: value / total for name, value in sums.items()}


def rpve(partial_volumes: np.ndarray) -> dict[str, float]:
    r"""Residual partial-volume error of each tissue, as MRIQC 24 computes it (Esteban et al. 2017).

    Per tissue map p (clipped to [0, 1]): with N the number of voxels where p > 0,
    values outside [P2, P98] of those voxels are set to 0, and

    .. math:: \text{rPVE} = \frac{1}{N}\Big[\sum_{p_i > 0.5} p_i + \sum_{p_i \le 0.5} (1 - p_i)\Big]

    The second sum runs over *every* voxel of the grid with p <= 0.5, including
    the whole background (p = 0), so the value grows with the field of view
    (MRIQC's published values are well above 1, e.g. 6.8 for GM in the IXI
    data); this is MRIQC's definition and it is kept, but a defacing method that
    crops the field of view lowers rPVE for that reason alone. Does not modify
    its input (MRIQC's function does).
    """
    out = {}
    for k, name in enumerate(TISSUES):
        pv = np.clip(np.asarray(partial_volumes[k], np.float64), 0.0, 1.0)
        positive = pv[pv > 0]
        if positive.size == 0:
            raise MetricUndefined(f"rpve_{name}", "empty partial-volume map")
        high, low = np.percentile(positive, [98, 2])
        pv[(pv < low) | (pv > high)] = 0
        above = pv > 0.5
        out[name] = float((pv[above].sum() + (1.0 - pv[~above]).sum()) / positive.size)
    return out


def tpm_overlap(partial_volumes: np.ndarray, template_priors: np.ndarray) -> dict[str, float]:
    r"""Fuzzy Jaccard overlap of each tissue map with the template's prior in the image's space (Esteban et al. 2017).

    .. math:: \text{JI}^k = \frac{\sum_i \min(p^k_i, q^k_i)}{\sum_i \max(p^k_i, q^k_i)}
    """
    out = {}
    for k, name in enumerate(TISSUES):
        p = np.asarray(partial_volumes[k], np.float64)
        q = np.asarray(template_priors[k], np.float64)
        union = np.maximum(p, q).sum()
        if union <= 0:
            raise MetricUndefined(f"tpm_overlap_{name}", "tissue map and prior are both empty")
        out[name] = float(np.minimum(p, q).sum() / union)
    return out


def inu_stats(field_map: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    """Median and 5-95 % range of the N4 bias field inside the brain (Tustison et al. 2010, IEEE TMI 29:1310).

    MRIQC reads the field where its hard segmentation is non-zero; values near 1
    (median) and 0 (range) mean little intensity non-uniformity.
    """
    values = np.asarray(field_map, np.float64)[np.asarray(brain) > 0]
    if values.size == 0:
        raise MetricUndefined("inu", "empty brain mask")
    p95, p05 = np.percentile(values, [95.0, 5.0])
    return {"med": float(np.median(values)), "range": float(abs(p95 - p05))}


# --------------------------------------------------------------------------- summary statistics


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, probabilities) -> np.ndarray:
    """Quantiles of a weighted sample by the SAS definition (statsmodels' ``DescrStatsW.quantile``).

    Weights are summed over tied values y_1 < y_2 < ... (every distinct value
    counts, weighted 0 or not); with s_j the cumulative weights and W their
    total, the p-quantile is y_{j+1} when pW lies strictly between s_j and
    s_{j+1}, (y_j + y_{j+1}) / 2 when pW = s_j (to 1e-10), y_1 below s_1.
    """
    distinct, inverse = np.unique(values, return_inverse=True)
    return _quantiles_of_ties(distinct, np.bincount(inverse.ravel(), weights=weights), probabilities)


def _quantiles_of_ties(distinct: np.ndarray, tie_weights: np.ndarray, probabilities) -> np.ndarray:
    cumulative = np.cumsum(tie_weights)
    targets = np.asarray(probabilities, np.float64) * cumulative[-1]
    index = np.searchsorted(cumulative, targets)
    out = distinct[index].astype(np.float64)
    hit = (np.abs(targets - cumulative[index]) < 1e-10) & (index < len(cumulative) - 1)
    out[hit] = (distinct[index[hit]] + distinct[index[hit] + 1]) / 2
    return out


def summary_stats(
    image: np.ndarray, regions: dict[str, np.ndarray], *, decimals: int | None = REPORTED_DECIMALS
) -> dict[str, dict[str, float]]:
    """Weighted statistics of ``image`` in each region (a mask or partial-volume map), as MRIQC 24 reports them.

    Per region with weights w (the map): ``mean``, ``stdv`` (weighted, ddof 0)
    and the weighted ``p05``, ``median``, ``p95`` (:func:`weighted_quantiles`)
    of the intensities rounded to integers with the weights rounded to 3
    decimals (after a float32 cast), MRIQC's guard against floating-point
    variability; ``k`` (excess kurtosis, biased) and ``mad`` (median absolute
    deviation about the weighted median over :data:`MAD_TO_SD`) of the unrounded
    intensities where the map exceeds half its maximum; ``n`` = the sum of the
    map. All but ``n`` rounded to ``decimals``.
    """
    tied = _tied_intensities(image)
    return {label: _region_summary(tied, label, region, decimals) for label, region in regions.items()}


def _tied_intensities(image: np.ndarray) -> tuple:
    """The intensities, rounded to integers, their distinct values and each voxel's rank among them (shared by regions)."""
    data = np.asarray(image, np.float64).reshape(-1)
    rounded = np.round(data, 0)
    # the rounded intensities are integers: group their ties by counting, not by sorting
    low, high = rounded.min(), rounded.max()
    if high - low < 5e7:
        codes = (rounded - low).astype(np.int64)
        present = np.bincount(codes) > 0
        distinct = np.flatnonzero(present).astype(np.float64) + low
        codes = np.cumsum(present)[codes] - 1  # ranks among the distinct values
    else:
        distinct, codes = np.unique(rounded, return_inverse=True)
    return data, rounded, distinct, codes


def _region_summary(tied: tuple, label: str, region: np.ndarray, decimals: int | None) -> dict[str, float]:
    data, rounded, distinct, codes = tied
    region = np.asarray(region)
    weights = np.round(region.astype(np.float32).reshape(-1), 3).astype(np.float64)
    total = weights.sum()
    if total <= 0:
        raise MetricUndefined(f"summary_{label}", f"region {label!r} is empty")
    mean = float(np.dot(rounded, weights) / total)
    stdv = math.sqrt(float(np.dot((rounded - mean) ** 2, weights) / total))
    p05, median, p95 = _quantiles_of_ties(
        distinct, np.bincount(codes, weights=weights, minlength=distinct.size), [0.05, 0.5, 0.95]
    )
    core = data[region.reshape(-1) > 0.5 * region.max()]
    deviation = core - core.mean()
    m2 = np.mean(deviation**2)
    kurt = float(np.mean(deviation**4) / m2**2 - 3.0) if m2 > 0 else float("nan")
    mad = float(np.median(np.abs(core - median) / MAD_TO_SD))
    return {
        "k": _rounded(kurt, decimals),
        "mad": _rounded(mad, decimals),
        "mean": _rounded(mean, decimals),
        "median": _rounded(median, decimals),
        "n": float(region.sum(dtype=np.float64)),
        "p05": _rounded(p05, decimals),
        "p95": _rounded(p95, decimals),
        "stdv": _rounded(stdv, decimals),
    }


def harmonise(corrected: np.ndarray, wm_partial_volume: np.ndarray, threshold: float = 0.9) -> np.ndarray:
    """The INU-corrected image scaled so that its median in eroded white matter is :data:`HARMONISED_WM`.

    As MRIQC's ``Harmonize``: WM is where the WM map is at least ``threshold``,
    eroded once with the 18-neighbourhood; the result is float32, as MRIQC's
    file of it is.
    """
    wm = ndimage.binary_erosion(
        np.asarray(wm_partial_volume) >= threshold, structure=ndimage.generate_binary_structure(3, 2)
    )
    if not wm.any():
        raise MetricUndefined("harmonisation", f"no white matter with fraction >= {threshold} after erosion")
    median = float(np.median(corrected[wm]))
    if median <= 0:
        raise MetricUndefined("harmonisation", "white matter's median intensity is not positive")
    return (np.asarray(corrected, np.float64) * (HARMONISED_WM / median)).astype(np.float32)


# --------------------------------------------------------------------------- smoothness


def fwhm_classic(image: np.ndarray, mask: np.ndarray, zooms) -> tuple[float, float, float]:
    r"""Smoothness along each axis in millimetres, by AFNI 3dFWHMx's classic first-difference estimate.

    After Forman et al. (1995, MRM 33:636) and Cox (AFNI's ``3dFWHMx
    -ShowMeClassicFWHM``, which MRIQC calls with ``-combine -detrend``): with
    :math:`\sigma^2` the variance of the image over ``mask`` and
    :math:`\sigma^2_\Delta` the variance of the first differences between
    neighbours along an axis (pairs with both voxels in the mask),

    .. math:: \text{FWHM} = \Delta x \sqrt{\frac{-2\ln 2}{\ln\left(1 - \sigma^2_\Delta / 2\sigma^2\right)}}

    which is exact for Gaussian-smoothed white noise. An axis where the
    logarithm's argument is outside (0, 1) gets -1, as in AFNI. Written from
    AFNI's documentation of the method: AFNI itself is not available here, so
    this estimate is not compared with 3dFWHMx's output. A single volume is not
    detrended (``-detrend`` acts along time).
    """
    inside = np.asarray(mask) > 0
    data = np.asarray(image, np.float64)
    if np.count_nonzero(inside) < 9:
        raise MetricUndefined("fwhm", "fewer than 9 voxels in the mask")
    variance = float(np.var(data[inside], ddof=1))
    if variance <= 0:
        raise MetricUndefined("fwhm", "the image is constant in the mask")
    out = []
    for axis, step in enumerate(zooms[:3]):
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        pairs = inside[tuple(lower)] & inside[tuple(upper)]
        differences = (data[tuple(upper)] - data[tuple(lower)])[pairs]
        if differences.size < 6:
            out.append(-1.0)
            continue
        argument = 1.0 - 0.5 * float(np.var(differences, ddof=1)) / variance
        out.append(float(step * math.sqrt(-2.0 * math.log(2.0) / math.log(argument))) if 0 < argument < 1 else -1.0)
    return tuple(out)


# --------------------------------------------------------------------------- all IQMs of one image


@dataclass
class IQMInputs:
    """Everything the IQMs of one image read, on one voxel grid (RAS-canonical: axis 0 = x, 1 = y, 2 = z).

    ``image``: the image as acquired (QI2, FWHM); ``corrected``: after INU
    correction (summary statistics, SNR, CNR, CJV, EFC, FBER, WM2MAX, after
    :func:`harmonise`); ``zooms``: voxel size in mm. Masks (bool): ``brain``,
    ``head``, ``rotation`` (empty frame voxels), ``hat`` (air above the
    nasion-inion plane), ``artifact`` (artefacts in the hat), ``air`` (hat
    without artefacts). ``partial_volumes``: (3, ...) CSF, GM, WM fractions;
    ``labels``: hard segmentation (0 outside the brain, 1 CSF, 2 GM, 3 WM);
    ``inu_field``: the multiplicative bias field; ``template_priors``: (3, ...)
    template CSF, GM, WM priors on this grid, or None (no tpm_overlap).
    ``provenance``: how each was made (:mod:`.masks` fills it).
    """

    image: np.ndarray
    corrected: np.ndarray
    zooms: tuple
    brain: np.ndarray
    head: np.ndarray
    rotation: np.ndarray
    hat: np.ndarray
    artifact: np.ndarray
    air: np.ndarray
    partial_volumes: np.ndarray
    labels: np.ndarray
    inu_field: np.ndarray | None = None
    template_priors: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)


#: Every IQM name :func:`image_quality_metrics` returns, in S2 Data's order (Provins et al. 2025) plus size/spacing.
IQM_NAMES = (
    ("cjv", "cnr", "efc", "fber", "fwhm_avg", "fwhm_x", "fwhm_y", "fwhm_z")
    + tuple(f"icvs_{t}" for t in TISSUES)
    + ("inu_med", "inu_range", "qi_1", "qi_2")
    + tuple(f"rpve_{t}" for t in TISSUES)
    + ("snr_csf", "snr_gm", "snr_total", "snr_wm")
    + ("snrd_csf", "snrd_gm", "snrd_total", "snrd_wm")
    + tuple(f"summary_{r}_{s}" for r in ("bg",) + TISSUES for s in SUMMARY_STATISTICS)
    + tuple(f"tpm_overlap_{t}" for t in TISSUES)
    + ("wm2max",)
    + ("size_x", "size_y", "size_z", "spacing_x", "spacing_y", "spacing_z")
)


def image_quality_metrics(inputs: IQMInputs, *, mriqc_sentinels: bool = False, on_undefined: str = "nan") -> dict:
    """Every anatomical IQM of one image (:data:`IQM_NAMES`), after MRIQC 24.0.2's ``StructuralQC`` and QI2.

    ``inputs``: :class:`IQMInputs` (build them with
    :func:`defacebench.quality.masks.iqm_inputs` from an image and, optionally,
    its brain mask). A metric that cannot be computed on this image (e.g. no air
    left after defacing: FBER, SNRd, CNR, QI1, QI2, the background statistics)
    is NaN in ``iqms`` and its reason is in ``undefined`` (``on_undefined="raise"``:
    the :class:`MetricUndefined` propagates instead); ``mriqc_sentinels=True``
    reports MRIQC's sentinel values (-1, 0) where MRIQC would.

    Returns ``{"iqms": {name: float}, "undefined": {name: reason},
    "implementation": "defacebench-iqms", "version", "reference",
    "provenance": {...}, "runtime_s"}``.
    """
    if on_undefined not in ("nan", "raise"):
        raise ValueError(f"on_undefined must be 'nan' or 'raise', not {on_undefined!r}")
    start = time.perf_counter()
    iqms: dict[str, float] = {}
    undefined: dict[str, str] = {}

    def attempt(names, compute):
        try:
            values = compute()
        except MetricUndefined as failure:
            if on_undefined == "raise":
                raise
            for name in names:
                iqms[name] = float("nan")
                undefined[name] = failure.reason
            return None
        if isinstance(values, dict):
            iqms.update({name: float(values[name]) for name in names})
        else:
            iqms[names[0]] = float(values)
        return values

    def mean_over_tissues(prefix):
        # MRIQC's "total": the mean of the three tissues' values (undefined if one of them is)
        iqms[f"{prefix}_total"] = float(np.mean([iqms[f"{prefix}_{t}"] for t in ("csf", "wm", "gm")]))
        reasons = sorted({undefined[f"{prefix}_{t}"] for t in TISSUES if f"{prefix}_{t}" in undefined})
        if reasons:
            undefined[f"{prefix}_total"] = "; ".join(reasons)

    image = np.nan_to_num(np.asarray(inputs.image, np.float64))
    # without white matter to scale by, no intensity statistic is comparable: the whole image fails
    harmonised = harmonise(inputs.corrected, inputs.partial_volumes[2])
    corrected = np.nan_to_num(harmonised.astype(np.float64))
    corrected[corrected < 0] = 0

    regions = {t: inputs.partial_volumes[k] for k, t in enumerate(TISSUES)}
    regions["bg"] = inputs.air.astype(np.uint8)
    stats_by_region = {}
    tied = _tied_intensities(corrected)
    for label, region in regions.items():
        names = [f"summary_{label}_{s}" for s in SUMMARY_STATISTICS]
        values = attempt(
            names,
            lambda label=label, region=region: {
                f"summary_{label}_{s}": v for s, v in _region_summary(tied, label, region, REPORTED_DECIMALS).items()
            },
        )
        if values is not None:
            stats_by_region[label] = {s: values[f"summary_{label}_{s}"] for s in SUMMARY_STATISTICS}

    if not all(t in stats_by_region for t in TISSUES):
        raise AnalysisFailure("iqm:summary", "a tissue map is empty: " + "; ".join(sorted(set(undefined.values()))))
    summary = stats_by_region
    for t in TISSUES:
        attempt([f"snr_{t}"], lambda t=t: snr(summary[t]["median"], summary[t]["stdv"], summary[t]["n"]))
    mean_over_tissues("snr")
    air_reason = undefined.get("summary_bg_mean")
    for t in TISSUES:
        if air_reason:
            iqms[f"snrd_{t}"], undefined[f"snrd_{t}"] = float("nan"), air_reason
        else:
            attempt(
                [f"snrd_{t}"],
                lambda t=t: snr_dietrich(
                    summary[t]["median"], summary["bg"]["mad"], summary["bg"]["stdv"], mriqc_sentinels=mriqc_sentinels
                ),
            )
    mean_over_tissues("snrd")
    if air_reason:
        iqms["cnr"], undefined["cnr"] = float("nan"), air_reason
    else:
        attempt(
            ["cnr"],
            lambda: cnr(
                summary["wm"]["median"],
                summary["gm"]["median"],
                summary["bg"]["stdv"],
                summary["wm"]["stdv"],
                summary["gm"]["stdv"],
            ),
        )
    attempt(["fber"], lambda: fber(corrected, inputs.head, inputs.rotation, mriqc_sentinels=mriqc_sentinels))
    attempt(["efc"], lambda: efc(corrected, inputs.rotation))
    attempt(["wm2max"], lambda: wm2max(corrected, summary["wm"]["median"]))
    attempt(["qi_1"], lambda: qi1(inputs.air, inputs.artifact, mriqc_sentinels=mriqc_sentinels))
    attempt(["qi_2"], lambda: qi2(image, inputs.hat, mriqc_sentinels=mriqc_sentinels))
    attempt(
        ["cjv"],
        lambda: cjv(summary["wm"]["median"], summary["gm"]["median"], summary["wm"]["mad"], summary["gm"]["mad"]),
    )

    zooms = tuple(float(z) for z in inputs.zooms[:3])

    def smoothness_in_voxels():
        voxels = [mm / z for mm, z in zip(fwhm_classic(image, inputs.brain, zooms), zooms)]  # MRIQC reports voxels
        return {**{f"fwhm_{a}": v for a, v in zip("xyz", voxels)}, "fwhm_avg": float(np.mean(voxels))}

    attempt(["fwhm_x", "fwhm_y", "fwhm_z", "fwhm_avg"], smoothness_in_voxels)
    attempt(
        [f"icvs_{t}" for t in TISSUES],
        lambda: {f"icvs_{t}": v for t, v in icv_fractions(inputs.partial_volumes).items()},
    )
    attempt([f"rpve_{t}" for t in TISSUES], lambda: {f"rpve_{t}": v for t, v in rpve(inputs.partial_volumes).items()})
    if inputs.inu_field is not None:
        attempt(
            ["inu_med", "inu_range"],
            lambda: {f"inu_{k}": v for k, v in inu_stats(inputs.inu_field, inputs.labels).items()},
        )
    else:
        for name in ("inu_med", "inu_range"):
            iqms[name], undefined[name] = float("nan"), "no bias field given"
    if inputs.template_priors is not None:
        attempt(
            [f"tpm_overlap_{t}" for t in TISSUES],
            lambda: {
                f"tpm_overlap_{t}": v for t, v in tpm_overlap(inputs.partial_volumes, inputs.template_priors).items()
            },
        )
    else:
        for t in TISSUES:
            iqms[f"tpm_overlap_{t}"], undefined[f"tpm_overlap_{t}"] = float("nan"), "no template priors given"
    iqms.update({f"size_{a}": float(n) for a, n in zip("xyz", image.shape)})
    iqms.update({f"spacing_{a}": z for a, z in zip("xyz", zooms)})
    return {
        "iqms": {name: iqms[name] for name in IQM_NAMES},
        "undefined": undefined,
        "implementation": IMPLEMENTATION,
        "version": _version(),
        "reference": REFERENCE,
        "provenance": dict(inputs.provenance),
        "runtime_s": round(time.perf_counter() - start, 3),
    }


def measure_image(
    img,
    brain_mask: np.ndarray | None = None,
    *,
    threads: int = 1,
    artifact_distance_kind: str = "mortamet",
    mriqc_sentinels: bool = False,
    reused: dict | None = None,
) -> dict:
    """Every IQM of a NIfTI image: its masks (:func:`defacebench.quality.masks.iqm_inputs`), then :func:`image_quality_metrics`.

    The entry point for an analysis arm. ``brain_mask``: on ``img``'s own grid
    (e.g. the defacing preparation's deepbet mask of the full image; None runs
    deepbet). Returns :func:`image_quality_metrics`' dict with the masks'
    ``stage_times_s`` and an ``iqms`` time beside them. A step that fails on this
    image (brain extraction, N4, segmentation, registration, no white matter to
    harmonise by) raises :class:`~defacebench.records.AnalysisFailure`; a single
    IQM that cannot be computed is NaN with its reason in ``undefined``. ``reused``: steps another
    arm already ran on this image (:func:`defacebench.quality.masks.iqm_inputs`).
    """
    from .masks import iqm_inputs

    inputs = iqm_inputs(img, brain_mask, threads=threads, artifact_distance_kind=artifact_distance_kind, reused=reused)
    result = image_quality_metrics(inputs, mriqc_sentinels=mriqc_sentinels)
    result["stage_times_s"] = {**inputs.provenance["stage_times_s"], "iqms": result["runtime_s"]}
    return result


def _rounded(value: float, decimals: int | None) -> float:
    return float(value) if decimals is None else round(float(value), decimals)


def _version() -> str:
    try:
        return metadata.version("defacebench")
    except metadata.PackageNotFoundError:
        return "unknown"
