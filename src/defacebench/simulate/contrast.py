"""Image formation per modality: tissue contrast, texture, partial volume, bias field, Rician noise, slices.

Relative tissue signal (white matter = 1) follows typical 3 T values: T1w
(MPRAGE) WM > GM > CSF; T2w CSF brightest; FLAIR dark CSF, GM slightly above
WM, lesions and oedema bright; gadolinium-enhanced T1w with a bright
enhancing rim. Normal structures that mimic pathology (periventricular caps,
choroid plexus, CSF flow artefacts) come from :mod:`.mimics`. Each subject's values are jittered. Non-brain head tissue is
the head template's own T1w intensity (so the face is a real average face),
mapped per modality. The smooth multiplicative bias field mimics receive-coil
inhomogeneity (Sled et al. 1998, IEEE TMI 17:87) and noise is Rician, the
magnitude of complex Gaussian noise (Gudbjartsson & Patz 1995, MRM 34:910).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..arrays import bounding_box
from . import pathology
from .anatomy import CSF, GM, HEAD, WM

#: Mean signal per tissue and modality (WM = 1), before the per-subject jitter.
#: FLAIR lesions: 1.70 is the brightest lesion; each lesion's contrast is scaled by its own strength
#: (:data:`LESION_STRENGTH`), giving 1.3-1.7 x normal-appearing WM: lesion-to-NAWM contrast differs
#: between lesions and patients (Rossi et al. 2013, J Biomed Sci Eng 6(3A), "Lesion contrast differences
#: in MRI sequences in multiple sclerosis"), and many lesions are barely brighter than grey matter.
#: The earlier 1.95 made every lesion far brighter than grey matter (1.22), which real lesions are not:
#: on the real sample sub-ms07 the reference lesions' mean FLAIR is 1.15-1.47 x WM (10th-90th
#: percentile over lesions; looked at to diagnose the error, not fitted).
#: Caps/lining, choroid plexus and CSF flow artefacts: see :mod:`.mimics` (Neema et al. 2009).
TISSUE_SIGNAL = {
    "T1w": {
        "csf": 0.28,
        "gm": 0.64,
        "wm": 1.00,
        "lesion": 0.66,
        "necrosis": 0.30,
        "oedema": 0.72,
        "nonenhancing": 0.58,
        "enhancing": 0.62,
        "caps": 0.95,
        "choroid": 0.70,
        "csf_flow": 0.28,
    },
    "ceT1w": {
        "csf": 0.28,
        "gm": 0.64,
        "wm": 1.00,
        "lesion": 0.66,
        "necrosis": 0.30,
        "oedema": 0.72,
        "nonenhancing": 0.60,
        "enhancing": 1.55,
        "caps": 0.95,
        "choroid": 1.60,
        "csf_flow": 0.28,
    },
    "T2w": {
        "csf": 2.60,
        "gm": 1.45,
        "wm": 1.00,
        "lesion": 1.90,
        "necrosis": 2.40,
        "oedema": 2.00,
        "nonenhancing": 1.75,
        "enhancing": 1.50,
        "caps": 1.50,
        "choroid": 1.50,
        "csf_flow": 2.60,
    },
    "FLAIR": {
        "csf": 0.12,
        "gm": 1.22,
        "wm": 1.00,
        "lesion": 1.70,
        "necrosis": 0.70,
        "oedema": 1.80,
        "nonenhancing": 1.65,
        "enhancing": 1.45,
        "caps": 1.45,
        "choroid": 1.10,
        "csf_flow": 1.00,
    },
}
#: Per-subject range of signals that vary far more between patients than the common jitter:
#: the FLAIR signal of necrotic/cystic tumour depends on its protein content (fluid is not always
#: nulled), the peak FLAIR signal of the periventricular caps varies with age and small-vessel
#: disease (Fazekas et al. 1987), and the enhancement of a glioma's rim varies from faint to strong.
WIDE_SIGNAL_RANGE = {
    "FLAIR": {"necrosis": (0.5, 1.4), "caps": (1.15, 1.6)},
    "T2w": {"caps": (1.2, 1.7)},
    "ceT1w": {"enhancing": (1.25, 1.8)},
}
#: Each lesion's contrast relative to the table value: lesion = WM + strength x (lesion - WM).
LESION_STRENGTH = (0.45, 1.0)
#: Relative s.d. of the extra, coarser (~2 mm) heterogeneity inside a tumour (real glioblastomas are
#: heterogeneous: Menze et al. 2015 describe the compartments' variable, overlapping intensities).
TUMOUR_TEXTURE_SD = 0.08
#: Peritumoural oedema is brightest next to the tumour core and fades into normal white matter at its
#: outer margin (where BraTS annotators draw the FLAIR hyperintensity's edge, Menze et al. 2015): the
#: oedema contrast falls linearly with distance from the core to this fraction (per subject).
OEDEMA_EDGE_CONTRAST = (0.35, 0.8)
#: Non-brain head tissue, from the template T1w (normalised to its WM = 1): signal = gain * t1 ** power.
#: T2w keeps fat bright but lifts darker tissue; FLAIR keeps fat moderately bright.
HEAD_RESPONSE = {"T1w": (1.0, 1.0), "ceT1w": (1.05, 1.0), "T2w": (1.25, 0.7), "FLAIR": (0.95, 0.9)}
#: Cortical bone of the skull (:func:`.anatomy.skull_bone`), relative to WM: almost no signal in any of
#: these sequences (short T2*, few mobile protons). Real T1w heads measure 0.11-0.15 x WM in the dark
#: band outside the brain (noise floor and partial volume included; sub-IXI012, sub-IXI013, sub-otsu).
#: Not jittered, so adding the skull drew no extra random numbers: every other voxel of a simulated
#: image is as it was before the skull was added.
BONE_SIGNAL = {"T1w": 0.08, "ceT1w": 0.08, "T2w": 0.10, "FLAIR": 0.08}
#: Per-subject relative jitter of every tissue's signal.
SIGNAL_JITTER = 0.06
#: Relative s.d. of the fine (~2 mm) texture within tissue.
TEXTURE_SD = 0.04


def tissue_signal(modality: str, rng: np.random.Generator) -> dict:
    """This subject's tissue signal for ``modality`` (table value x (1 +- jitter))."""
    signal = {k: v * (1 + rng.uniform(-SIGNAL_JITTER, SIGNAL_JITTER)) for k, v in TISSUE_SIGNAL[modality].items()}
    for key, (low, high) in WIDE_SIGNAL_RANGE.get(modality, {}).items():
        signal[key] = float(rng.uniform(low, high))
    return signal


def bias_field(shape, zooms, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth multiplicative field exp(g), g Gaussian-smoothed noise (~8 cm) with s.d. ``amplitude``.

    Computed on an 8 mm grid and interpolated: it varies over centimetres.
    """
    coarse = tuple(max(2, int(np.ceil(n * z / 8.0)) + 1) for n, z in zip(shape, zooms))
    g = ndimage.gaussian_filter(rng.standard_normal(coarse), 5.0, mode="reflect")
    g *= amplitude / max(float(g.std()), 1e-9)
    zoom = [(n - 1) / (c - 1) for n, c in zip(shape, coarse)]
    full = ndimage.zoom(g.astype(np.float32), zoom, order=1, grid_mode=False, output=np.float32)
    return np.exp(full[: shape[0], : shape[1], : shape[2]])


def clean_image(
    modality: str,
    labels: np.ndarray,
    fractions: dict,
    head_t1: np.ndarray,
    lesion: np.ndarray | None,
    tumour: np.ndarray | None,
    signal: dict,
    rng: np.random.Generator,
    zooms,
    mimics: dict | None = None,
    bone: np.ndarray | None = None,
) -> np.ndarray:
    """Noise-free image: tissue signal with fine texture, template head tissue, partial-volume blur.

    Inside the skull each voxel mixes the CSF, GM and WM signal by its tissue
    ``fractions`` (partial volume, e.g. at the cortex and in the deep grey
    nuclei); the normal lesion mimics (``mimics``, :func:`.mimics.normal_mimics`)
    blend in; lesions and tumour compartments replace it. Each lesion has its own
    contrast (:data:`LESION_STRENGTH`); oedema fades with distance from the
    tumour core (:data:`OEDEMA_EDGE_CONTRAST`) and tumours carry extra texture.
    ``bone`` (fraction of cortical bone, 0..1) darkens the head tissue towards
    :data:`BONE_SIGNAL`.
    """
    data = np.zeros(labels.shape, np.float32)
    gain, power = HEAD_RESPONSE[modality]
    head = labels == HEAD
    data[head] = gain * np.power(np.maximum(head_t1[head], 0), power)
    if bone is not None:
        data[head] += np.clip(bone[head], 0, 1) * (BONE_SIGNAL[modality] - data[head])
    inside = (labels == CSF) | (labels == GM) | (labels == WM)
    data[inside] = (
        fractions["csf"][inside] * signal["csf"]
        + fractions["gm"][inside] * signal["gm"]
        + fractions["wm"][inside] * signal["wm"]
    )
    if mimics:
        box = mimics["box"]
        local = data[box]
        for key in ("caps", "flow", "choroid"):
            weight = mimics[key]
            target = signal["csf_flow" if key == "flow" else key]
            local += weight * (target - local)
        data[box] = local
    if lesion is not None and lesion.any():
        # every lesion has its own contrast: some are faint, some bright, T1w 'black holes' are dark
        components, n = ndimage.label(lesion, structure=np.ones((3, 3, 3)))
        strength = np.concatenate([[0.0], rng.uniform(*LESION_STRENGTH, n)]).astype(np.float32)
        data[lesion] = signal["wm"] + strength[components[lesion]] * (signal["lesion"] - signal["wm"])
    if tumour is not None and tumour.any():
        box = bounding_box(tumour > 0)
        local_labels = tumour[box]
        local = data[box]
        for label, key in (
            (pathology.NECROSIS, "necrosis"),
            (pathology.NONENHANCING, "nonenhancing"),
            (pathology.ENHANCING, "enhancing"),
        ):
            local[local_labels == label] = signal[key]
        oedema = local_labels == pathology.OEDEMA
        if oedema.any():
            core = (local_labels > 0) & ~oedema
            distance = ndimage.distance_transform_edt(~core, sampling=zooms) if core.any() else np.zeros(core.shape)
            reach = max(float(distance[oedema].max()), 1e-6)
            edge = rng.uniform(*OEDEMA_EDGE_CONTRAST)
            contrast = 1.0 - (1.0 - edge) * np.clip(distance[oedema] / reach, 0.0, 1.0)
            local[oedema] = signal["wm"] + contrast * (signal["oedema"] - signal["wm"])
        heterogeneity = ndimage.gaussian_filter(rng.standard_normal(local.shape).astype(np.float32), 2.0 / min(zooms))
        heterogeneity *= TUMOUR_TEXTURE_SD / max(float(heterogeneity.std()), 1e-9)
        local[local_labels > 0] *= 1 + heterogeneity[local_labels > 0]
        data[box] = local
    # fine texture (~2 mm) within tissue, then the scanner's point spread (partial volume at edges)
    texture = ndimage.gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32), 1.0 / min(zooms))
    texture *= TEXTURE_SD / max(float(texture.std()), 1e-9)
    data *= 1 + texture
    return ndimage.gaussian_filter(data, 0.5 / np.asarray(zooms, float))


def rician(data: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``data`` plus complex Gaussian noise of s.d. ``sigma`` per channel."""
    real = data + sigma * rng.standard_normal(data.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(data.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


def thick_slices(data: np.ndarray, affine: np.ndarray, factor: int, axis: int = 2):
    """Average ``factor`` neighbouring slices along ``axis`` (a 2-D multi-slice acquisition); new affine."""
    n = (data.shape[axis] // factor) * factor
    moved = np.moveaxis(np.take(data, np.arange(n), axis=axis), axis, -1)
    thick = moved.reshape(*moved.shape[:-1], n // factor, factor).mean(-1)
    thick = np.moveaxis(thick, -1, axis)
    scale = np.ones(4)
    scale[axis] = factor
    new_affine = affine @ np.diag(scale)
    # the thick slice's centre lies in the middle of the thin slices it averages
    new_affine[:3, 3] += affine[:3, axis] * (factor - 1) / 2
    return thick, new_affine


def to_int16(data: np.ndarray, scale: float) -> np.ndarray:
    """Stored integers: ``data x scale`` rounded and clipped to int16's positive range."""
    return np.clip(np.rint(data * scale), 0, 32767).astype(np.int16)
