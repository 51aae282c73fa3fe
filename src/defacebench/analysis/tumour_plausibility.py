"""Plausibility of a tumour segmentation: is what was labelled a tumour at all?

A glioblastoma is one or a few compact regions inside the brain (Louis et al. 2021, WHO CNS5;
BraTS, Menze et al. 2015, IEEE TMI 34:1993). Two failures of voxel classifiers on real scans look
nothing like that and are easy to measure (issue 25: a forest trained on simulated gliomas labelled
the brain's whole outer rim as oedema on one real scan, and the falx, septum and ventricle walls on
another, both recorded ``ok``):

* **too large**: the whole tumour holds more than ``max_brain_fraction`` of the brain;
* **follows the brain's surface**: the whole tumour comes within ``rim_mm`` of more than
  ``rim_surface_fraction`` of the brain mask's edge. A real tumour that reaches the cortex touches
  a patch of the surface; a rim artefact wraps around it (whatever else is labelled too);
* **follows the midline**: the whole tumour fills more than ``midline_band_fraction`` of the brain
  within ``midline_mm`` of its mid-sagittal plane (x = the brain's centroid on the RAS-canonical
  grid) and spans more than ``midline_extent_fraction`` of the brain front to back there. A tumour
  crossing the corpus callosum fills a short stretch of that band; falx, septum and ventricle-wall
  labelling is a long thin sagittal sheet.

A third check is on the images, not the shape (:func:`enhancement_plausibility`):

* **enhancement not labelled**: less than ``min_enhancing_label_ml`` of the whole tumour is labelled
  enhancing although at least ``min_enhancing_signal_ml`` of it enhances on the ceT1w (robust z of
  ceT1w - T1w against the healthy brain >= ``enhancement_z``,
  :func:`.tumour_hyperintensity.enhancement_evidence`). A glioblastoma's enhancing rim is what
  defines its core on the ceT1w (Menze et al. 2015); a segmentation that labels an enhancing
  tumour as oedema only has missed the core it is meant to measure. A tumour that does not enhance
  (a lower-grade glioma) is not flagged.

:func:`tumour_plausibility` returns the measures and a list of reasons; the tumour arm turns a
non-empty list into a failure at stage ``plausibility`` (records name the reasons), so an absurd
segmentation is never reported as a volume. The thresholds were set on synthetic shapes and checked
against every true tumour of the simulated validation set and the one real reference in the shared
sample (``bench/bench_tumour_plausibility.py``), none of which they flag; they were not tuned on
the real scans that failed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Default thresholds (see the module docstring).
PLAUSIBILITY_SETTINGS = {
    "max_brain_fraction": 0.25,
    "rim_mm": 6.0,
    "rim_surface_fraction": 0.3,
    "midline_mm": 5.0,
    "midline_band_fraction": 0.25,
    "midline_extent_fraction": 0.5,
    "min_whole_ml": 5.0,
    "enhancement_z": 5.0,
    "min_enhancing_signal_ml": 2.0,
    "min_enhancing_label_ml": 0.5,
}


def tumour_plausibility(
    whole_tumour: np.ndarray, brain: np.ndarray, zooms, settings: dict | None = None
) -> tuple[dict, list[str]]:
    """Shape measures of ``whole_tumour`` (bool) inside ``brain`` (bool), both on one RAS-canonical grid.

    ``zooms``: voxel sizes (mm). Returns (measures, reasons); ``reasons`` is empty when the
    segmentation is plausible. Tumours smaller than ``min_whole_ml`` are not judged by shape (a
    few voxels can lie anywhere).
    """
    s = {**PLAUSIBILITY_SETTINGS, **(settings or {})}
    whole = np.asarray(whole_tumour, bool)
    brain = np.asarray(brain, bool)
    zooms = np.asarray(zooms, float)[:3]
    voxel_ml = float(np.prod(zooms)) / 1000
    whole_ml = float(whole.sum()) * voxel_ml
    brain_ml = float(brain.sum()) * voxel_ml
    measures = {"whole_tumour_ml": round(whole_ml, 2), "brain_ml": round(brain_ml, 1)}
    reasons: list[str] = []
    if brain_ml <= 0 or whole_ml < s["min_whole_ml"]:
        return measures, reasons
    share = whole_ml / brain_ml
    measures["brain_fraction"] = round(share, 4)
    if share > s["max_brain_fraction"]:
        reasons.append(f"whole tumour is {share:.0%} of the brain (more than {s['max_brain_fraction']:.0%})")

    edge = brain & ~ndimage.binary_erosion(brain)
    # the share of the brain's outer surface the tumour comes within rim_mm of
    covered = ndimage.distance_transform_edt(~whole, sampling=zooms)[edge] <= s["rim_mm"]
    rim_surface = float(covered.mean()) if covered.size else 0.0
    measures["rim_surface_fraction"] = round(rim_surface, 4)
    if rim_surface > s["rim_surface_fraction"]:
        reasons.append(
            f"follows the brain's surface: within {s['rim_mm']:g} mm of {rim_surface:.0%} of the brain's edge "
            f"(more than {s['rim_surface_fraction']:.0%})"
        )

    x = np.arange(brain.shape[0]) * zooms[0]
    midline_x = float(np.average(x, weights=brain.sum(axis=(1, 2))))
    band = np.abs(x - midline_x) <= s["midline_mm"]
    band_brain = brain[band]
    band_fill = float((whole[band] & band_brain).sum()) / max(float(band_brain.sum()), 1.0)
    along = np.flatnonzero(whole[band].any(axis=(0, 2)))
    brain_along = np.flatnonzero(brain.any(axis=(0, 2)))
    extent = (np.ptp(along) + 1) / (np.ptp(brain_along) + 1) if along.size and brain_along.size else 0.0
    measures.update({"midline_band_fraction": round(band_fill, 4), "midline_extent_fraction": round(float(extent), 4)})
    if band_fill > s["midline_band_fraction"] and extent > s["midline_extent_fraction"]:
        reasons.append(
            f"follows the midline: fills {band_fill:.0%} of the brain within {s['midline_mm']:g} mm of the "
            f"mid-sagittal plane, over {extent:.0%} of the brain's length"
        )
    return measures, reasons


def enhancement_plausibility(
    labels: np.ndarray, enhancement_z: np.ndarray, zooms, settings: dict | None = None
) -> tuple[dict, list[str]]:
    """Is an enhancing tumour labelled where the ceT1w enhances inside the whole tumour? (module notes)

    ``labels``: tumour labels (4 = enhancing); ``enhancement_z``: the enhancement evidence on the same
    grid. Returns (measures, reasons).
    """
    s = {**PLAUSIBILITY_SETTINGS, **(settings or {})}
    voxel_ml = float(np.prod(np.asarray(zooms, float)[:3])) / 1000
    whole = labels > 0
    enhancing_signal = float((whole & (enhancement_z >= s["enhancement_z"])).sum()) * voxel_ml
    enhancing_label = float((labels == 4).sum()) * voxel_ml
    measures = {"enhancing_signal_ml": round(enhancing_signal, 2), "enhancing_label_ml": round(enhancing_label, 2)}
    reasons = []
    if enhancing_label < s["min_enhancing_label_ml"] and enhancing_signal >= s["min_enhancing_signal_ml"]:
        reasons.append(
            f"no enhancing tumour labelled ({enhancing_label:.1f} ml), though {enhancing_signal:.1f} ml of the "
            f"tumour enhances on the ceT1w"
        )
    return measures, reasons
