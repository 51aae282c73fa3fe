"""Three-class partial-volume tissue segmentation (CSF, GM, WM) of a T1w brain.

A compact numpy/scipy re-implementation after FSL FAST (Zhang, Brady & Smith
2001, "Segmentation of brain MR images through a hidden Markov random field
model and the expectation-maximization algorithm", IEEE TMI 20:45-57) and the
partial-volume classifier of Shattuck et al. 2001 ("Magnetic resonance image
tissue classification using a partial volume model", NeuroImage 13:856-876);
it is neither tool itself:

1. the brain's intensity histogram is modelled as three pure Gaussian classes
   (CSF, GM, WM) plus two mixed classes (CSF/GM, GM/WM) whose intensities are a
   uniformly distributed fraction f of the two pure means (variance
   interpolated), fitted by maximum likelihood on the histogram;
2. each voxel gets one of the five labels by iterated conditional modes on a
   hidden Markov random field (Potts-like prior over the 6-neighbourhood, in
   which adjacent labels such as GM and GM/WM count as half agreeing), with the
   pure-class means re-estimated from the labels after each sweep, as FAST
   alternates MRF and parameter steps; the spreads stay those of the histogram
   fit (``reestimate_sds``: the spread of the voxels labelled pure is that of a
   distribution truncated by its mixed neighbours, so re-estimating it narrows
   the class sweep after sweep and hands its tails to the mixed labels);
3. pure voxels are fraction 1 of their class; a mixed voxel's fraction is
   f = (x - mu_a) / (mu_b - mu_a), clipped to [0, 1] (Shattuck et al. eq. 7).

The result is a (3, ...) float32 array of fractions (CSF, GM, WM) summing to 1
inside the mask, 0 outside. Everything runs on the mask's bounding box.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from ..arrays import bounding_box

#: Default segmentation settings.
SEGMENTATION_SETTINGS = {
    "mrf_beta": 0.3,
    "icm_iterations": 6,
    "histogram_bins": 256,
    "mixel_steps": 16,
    "reestimate_sds": False,
}

CLASSES = ("csf", "gm", "wm")
#: The five labels: pure classes at even indices, mixtures of neighbours at odd ones.
LABELS = ("csf", "csf/gm", "gm", "gm/wm", "wm")


def _label_loglik(x: np.ndarray, means, sds, steps: int) -> np.ndarray:
    """Log-likelihood (5, N) of intensities ``x`` under each pure and mixed label."""
    out = np.empty((5,) + x.shape, dtype=np.float64)
    for k in range(3):
        out[2 * k] = -0.5 * np.log(2 * np.pi * sds[k] ** 2) - 0.5 * ((x - means[k]) / sds[k]) ** 2
    f = (np.arange(steps) + 0.5) / steps
    # all mixing fractions at once, one row each (the histogram fit calls this thousands of
    # times on 256 bins, where a loop over fractions cost more than the arithmetic); summing the
    # rows adds them in the order the loop did, so the values are the loop's to the last bit
    grid = x.reshape(1, -1)
    for a in range(2):
        mu = ((1 - f) * means[a] + f * means[a + 1])[:, None]
        sd = ((1 - f) * sds[a] + f * sds[a + 1])[:, None]
        dens = (np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)).sum(axis=0)
        out[2 * a + 1] = np.log(dens.reshape(x.shape) / steps + 1e-300)
    return out


def _label_loglik_tabulated(x: np.ndarray, means, sds, steps: int, points: int = 8192) -> np.ndarray:
    """:func:`_label_loglik` tabulated on ``points`` intensities spanning ``x`` and interpolated linearly.

    The log-likelihoods are smooth functions of intensity alone, so the table is within 1.4e-6
    of the direct evaluation (1.8 million brain voxels of a simulated head; the labels and partial
    volumes came out identical) and saves evaluating 35 Gaussians per voxel per ICM sweep: the
    segmentation took 5.7 s instead of 13.9 s there.
    """
    lo, hi = float(x.min()), float(x.max())
    table = _label_loglik(np.linspace(lo, hi, points), means, sds, steps)
    position = (np.asarray(x, np.float64) - lo) * ((points - 1) / max(hi - lo, 1e-12))
    index = np.clip(position.astype(np.intp), 0, points - 2)  # uniform grid: no search needed
    weight = position - index
    return table[:, index] * (1.0 - weight) + table[:, index + 1] * weight


#: EM steps that give the label weights for given class means and spreads in :func:`fit_histogram`.
WEIGHT_EM_STEPS = 60


def label_weights(likelihood: np.ndarray, counts: np.ndarray, steps: int = WEIGHT_EM_STEPS) -> np.ndarray:
    """Mixing weights (5,) of the labels whose per-bin likelihoods are ``likelihood`` (5, bins), by EM.

    With the components fixed, the log-likelihood is concave in the weights (Dempster, Laird &
    Rubin 1977), so EM from equal weights climbs towards the one optimum; a fixed number of steps
    makes the result a smooth, deterministic function of the components.
    """
    weights = np.full(likelihood.shape[0], 1.0 / likelihood.shape[0])
    total = float(counts.sum())
    for _ in range(steps):
        weights = weights * (likelihood @ (counts / (weights @ likelihood + 1e-300))) / total
    return weights


def fit_histogram(values: np.ndarray, *, bins: int = 256, steps: int = 16):
    """Maximum-likelihood fit of the five-label partial-volume model to a histogram of ``values``.

    Returns (weights[5], means[3], sds[3]) with means ascending. The class means and spreads are
    optimised (Powell) on the likelihood profiled over the label weights (:func:`label_weights`):
    optimising the weights alongside them, a weight driven to zero stays there and the search ends
    wherever it began. Measured on sub-otsu (an 8-bit scan): starting from five sets of histogram
    quantiles the joint search stopped at five different points, up to 460 log-likelihood units
    apart, and its choice between a "pure CSF" and a "mixed CSF" solution flipped when deepbet's mask
    changed by 73 voxels after defacing, moving NBV by 1.2 %; the profiled search reached the same
    point from every start, on either mask.
    """
    lo, hi = np.percentile(values, [0.1, 99.9])
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    counts = counts.astype(float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    q = np.percentile(values, [10, 45, 85])
    spread = (hi - lo) / 12
    # a histogram cannot resolve a spread narrower than its bins; without this floor a class can
    # collapse onto one spiky bin (sd -> 0, likelihood -> infinity), as on a skull-stripped image
    # whose N4 output kept a spike (sub-ms07 with N4 stopped at the 1e-3 tolerance)
    min_sd = (hi - lo) / bins

    def unpack(theta):
        means = np.cumsum(np.concatenate([[theta[0]], np.exp(theta[1:3])]))
        sds = np.maximum(np.exp(theta[3:6]), min_sd)
        return means, sds

    def weights_and_nll(theta):
        means, sds = unpack(theta)
        likelihood = np.exp(_label_loglik(centres, means, sds, steps))
        weights = label_weights(likelihood, counts)
        return weights, -float(counts @ np.log(weights @ likelihood + 1e-300))

    theta0 = np.concatenate([[q[0]], np.log(np.maximum(np.diff(q), 1e-3 * (hi - lo))), np.log([spread] * 3)])
    res = optimize.minimize(
        lambda theta: weights_and_nll(theta)[1],
        theta0,
        method="Powell",
        options={"maxiter": 4000, "xtol": 1e-4, "ftol": 1e-7},
    )
    weights, _ = weights_and_nll(res.x)
    return (weights, *unpack(res.x))


def face_neighbour_count(indicator: np.ndarray) -> np.ndarray:
    """Per voxel, how many of its 6 face neighbours are set in ``indicator`` (outside the grid: 0).

    Shifted sums along each axis: the same counts as a convolution with the 6-neighbourhood
    kernel (0.008 s instead of 0.077 s on a 182 x 218 x 182 grid).
    """
    value = indicator.astype(np.uint8)  # counts reach 6: bytes are exact and ten times faster than floats
    count = np.zeros_like(value)
    for axis in range(value.ndim):
        lower = [slice(None)] * value.ndim
        upper = [slice(None)] * value.ndim
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        count[tuple(upper)] += value[tuple(lower)]
        count[tuple(lower)] += value[tuple(upper)]
    return count


def _neighbour_agreement(labels: np.ndarray, mask: np.ndarray, n_labels: int) -> np.ndarray:
    """Per label k: sum over a voxel's 6 in-mask neighbours of compat(k, neighbour label).

    compat is 1 for the same label, 0.5 for adjacent labels (e.g. GM and GM/WM), 0 otherwise.
    """
    same = np.stack([face_neighbour_count((labels == k) & mask) for k in range(n_labels)]).astype(np.float32)
    agreement = same.copy()
    agreement[1:] += 0.5 * same[:-1]
    agreement[:-1] += 0.5 * same[1:]
    return agreement


def mrf_labels(x, mask, weights, means, sds, *, beta: float, iterations: int, steps: int, reestimate_sds: bool = False):
    """Five-label map by ICM on the HMRF; pure-class means (and, if asked, spreads) re-estimated after each sweep."""
    values = x[mask]
    means, sds = np.array(means, float), np.array(sds, float)
    # equal label priors: the histogram's mixing weights would let the broad
    # mixed classes swallow the pure ones; the MRF decides instead (Shattuck et al. 2001)
    log_w = np.zeros((5, 1))
    loglik = _label_loglik_tabulated(values, means, sds, steps)
    labels = np.zeros(mask.shape, dtype=np.int8)
    labels[mask] = np.argmax(loglik + log_w, axis=0)
    for _ in range(iterations):
        agreement = _neighbour_agreement(labels, mask, 5)[:, mask]
        new = np.argmax(loglik + log_w + beta * agreement, axis=0).astype(np.int8)
        changed = np.count_nonzero(new != labels[mask])
        labels[mask] = new
        for k in range(3):
            sel = values[new == 2 * k]
            if sel.size > 100:
                means[k] = float(np.mean(sel))
                if reestimate_sds:
                    sds[k] = max(float(np.std(sel)), 1e-3 * means[-1])
        loglik = _label_loglik_tabulated(values, means, sds, steps)
        if changed < 1e-4 * values.size:
            break
    return labels, means, sds


def partial_volumes(x: np.ndarray, mask: np.ndarray, labels: np.ndarray, means) -> np.ndarray:
    """Fractions (3, ...) of CSF, GM, WM: 1 for pure labels, linear in intensity for mixed ones."""
    pve = np.zeros((3,) + mask.shape, dtype=np.float32)
    for k in range(3):
        pve[k][mask & (labels == 2 * k)] = 1.0
    for a in range(2):
        sel = mask & (labels == 2 * a + 1)
        f = np.clip((x[sel] - means[a]) / (means[a + 1] - means[a]), 0.0, 1.0)
        pve[a][sel] = 1.0 - f
        pve[a + 1][sel] = f
    return pve


def segment_tissues(
    intensity: np.ndarray,
    mask: np.ndarray,
    *,
    mrf_beta: float = SEGMENTATION_SETTINGS["mrf_beta"],
    icm_iterations: int = SEGMENTATION_SETTINGS["icm_iterations"],
    histogram_bins: int = SEGMENTATION_SETTINGS["histogram_bins"],
    mixel_steps: int = SEGMENTATION_SETTINGS["mixel_steps"],
    reestimate_sds: bool = SEGMENTATION_SETTINGS["reestimate_sds"],
) -> tuple[np.ndarray, dict]:
    """Partial-volume fractions (3, ...) of CSF, GM, WM inside ``mask``, and the fitted class parameters.

    Raises ``ValueError`` when the classes cannot be separated (too few voxels,
    constant intensities, or class means that collapse).
    """
    mask = np.asarray(mask, bool)
    if mask.sum() < 1000:
        raise ValueError(f"only {int(mask.sum())} voxels to segment")
    box = bounding_box(mask, margin=2)
    m = mask[box]
    x_full = np.asarray(intensity, dtype=np.float32)[box]
    values = x_full[m]
    scale = float(np.percentile(values, 99.0))
    if not np.isfinite(scale) or scale <= 0 or np.ptp(values) == 0:
        raise ValueError("brain intensities are constant or not finite")
    x_full = x_full / scale
    weights, means, sds = fit_histogram(x_full[m], bins=histogram_bins, steps=mixel_steps)
    labels, means, sds = mrf_labels(
        x_full,
        m,
        weights,
        means,
        sds,
        beta=mrf_beta,
        iterations=icm_iterations,
        steps=mixel_steps,
        reestimate_sds=reestimate_sds,
    )
    separation = np.diff(means) / sds[1:]
    if not np.all(np.isfinite(means)) or np.any(np.diff(means) <= 0) or np.any(separation < 1.0):
        raise ValueError(f"tissue classes not separable (normalised means {np.round(means, 3).tolist()})")
    pve_box = partial_volumes(x_full, m, labels, means)
    pve = np.zeros((3,) + mask.shape, dtype=np.float32)
    pve[(slice(None),) + box] = pve_box
    params = {
        "class_means": [float(v * scale) for v in means],
        "class_sds": [float(v * scale) for v in sds],
        "label_fractions": {name: float(np.mean(labels[m] == i)) for i, name in enumerate(LABELS)},
    }
    return pve, params
