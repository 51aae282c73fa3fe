"""Opt-in head realism: what real T1w heads have outside the brain and PyDeface's mean head lacks.

A simulated head is PyDeface's mean head (an average of registered heads) moved and warped, so it
matches the head template that whole-head steps register to almost exactly, and its non-brain
tissue is the average's blur. Real heads differ from that template exactly where defacing acts
(issue 19, measured by ``bench/bench_sim_realism.py``): their neck runs on to the edge of the field
of view, their face, jaw and neck are shaped and angled differently from the average relative to
the skull, their subcutaneous fat is brighter than white matter and their muscle darker, their
tissue has texture, and their air holds ghosts. With ``simulation: {head_realism: ...}`` each
subject gets these, drawn from its own random stream (:data:`REALISM_STREAM`), so every other draw
(pose, brain, pathology, contrast, noise) is that of the same seed without them, and:

* **the brain is untouched**: every displacement is zero within :data:`BRAIN_MARGIN_MM` of the
  intracranial region, intensities change only on non-brain head tissue (label ``HEAD``) and
  ghosts only in the air (label ``BACKGROUND``); the truth (labels, volumes, NBV) is that of the
  same subject without realism, except the head tissue's volume and the face mask;
* off (the default), nothing here runs and the simulated cohorts are byte-identical to before.

Sources: the neck below the template's lowest slices is an extrusion of the mean head's own
cross-section 15 mm above its lower edge (where the average has not yet faded), narrowing front to
back towards the throat and widening towards the shoulders (adult neck circumference and depth:
Farkas 1994, Anthropometry of the Head and Face); fat is bright on T1w because of its short T1
(about 250-380 ms against 800-1100 ms for white matter at 1.5-3 T; Gold et al. 2004, AJR 183:343;
Wansapura et al. 1999, JMRI 9:531); N/2 ghosts along the phase-encoding direction come from
inconsistencies between k-space lines (Haacke et al. 1999, Magnetic Resonance Imaging: Physical
Principles and Sequence Design, ch. 15).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import BACKGROUND, HEAD

#: The head realism's draws come from this stream of the subject's seed (the face shape uses 1).
REALISM_STREAM = 2
#: No displacement within this distance (mm) of the intracranial region; full displacement beyond
#: twice it (linear in between), as for the face shape (:data:`.anatomy.FACE_BRAIN_MARGIN_MM`).
BRAIN_MARGIN_MM = 10.0
#: The neck is extruded from the mean head's cross-section this far (mm) above its lowest slice:
#: below it the average fades (its mean intensity halves over the last 15 mm).
NECK_SOURCE_MM = 15.0
#: Over the first ``NECK_RECESSION_DEPTH_MM`` below the source, the neck's front recedes by up to
#: ``NECK_RECESSION_MM`` (from the jaw's depth to the throat's); below ``SHOULDER_START_MM`` it
#: widens left-right by up to ``SHOULDER_WIDENING`` (the trapezius, towards the shoulders).
NECK_RECESSION_MM = 35.0
NECK_RECESSION_DEPTH_MM = 30.0
SHOULDER_START_MM = 40.0
SHOULDER_WIDENING = 0.3
#: The neck bends about a point this far (mm) below the face's chin landmark, over this length.
NECK_PIVOT_BELOW_CHIN_MM = 10.0
NECK_BEND_LENGTH_MM = 40.0
#: The head's outline (:func:`head_shape_field`) moves nothing within ``SCALP_MARGIN_MM[0]`` of the
#: intracranial region (the skull's cortical bone lies within 6 mm, :data:`.anatomy.SKULL_MAX_MM`)
#: and fully beyond ``SCALP_MARGIN_MM[1]``; its displacement is smooth over ``SHAPE_SMOOTHING_MM``,
#: evaluated on a grid of ``SHAPE_GRID_VOXELS`` template voxels.
SCALP_MARGIN_MM = (6.0, 16.0)
SHAPE_SMOOTHING_MM = 25.0
SHAPE_GRID_VOXELS = 6
#: Scale of the non-brain head texture (mm, Gaussian s.d. of the smoothed noise).
TEXTURE_SCALE_MM = 1.5

#: Settings of ``simulation.head_realism`` (``true`` takes them all; a mapping overrides some; a
#: value of 0 turns that part off). Ranges are per subject, uniform.
DEFAULT_HEAD_REALISM = {
    "neck_mm": 80.0,  # neck modelled this far below the mean head's lowest slices (0: the mean head's own)
    "neck_flexion_deg": 15.0,  # the neck's bend relative to the head, uniform in +-
    "lower_head_scale": 0.12,  # size of face, jaw and neck relative to the skull, 1 +- this
    "head_shape_mm": 5.0,  # s.d. of a smooth displacement of scalp, face and neck (not skull, brain)
    "fat_to_wm": [1.0, 1.4],  # the brightest non-brain tissue (fat) relative to white matter (0: the mean head's)
    "nonbrain_contrast": [1.5, 2.5],  # power of the non-brain tone curve: darker muscle, same fat
    "subcutaneous_fat_mm": [2.0, 5.0],  # thickness of the bright fat layer under the skin
    "skin_mm": 1.0,  # skin above that layer (its intensity from the tone curve)
    "texture_sd": 0.12,  # relative s.d. of the non-brain tissue's texture
    "ghost_level": [0.01, 0.04],  # N/2 ghost in the air, relative to the head's signal
}


def settings_of(value) -> dict | None:
    """The head realism settings of ``simulation.head_realism`` (None: off); rejects unknown keys."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULT_HEAD_REALISM)
    if not isinstance(value, dict):
        raise ValueError(f"head_realism must be true, false or a mapping, not {value!r}")
    value = dict(value)
    if value.pop("enabled", True) is False:
        return None
    unknown = set(value) - set(DEFAULT_HEAD_REALISM)
    if unknown:
        raise ValueError(f"unknown head_realism settings {sorted(unknown)}; known: {sorted(DEFAULT_HEAD_REALISM)}")
    return {**DEFAULT_HEAD_REALISM, **value}


def _uniform(rng: np.random.Generator, bounds) -> float:
    low, high = (bounds, bounds) if np.isscalar(bounds) else bounds
    return float(rng.uniform(low, high))


def draw(rng: np.random.Generator, settings: dict) -> dict:
    """This subject's head realism parameters (recorded in its truth as ``head_realism``)."""
    return {
        "neck_mm": float(settings["neck_mm"]),
        "neck_flexion_deg": float(rng.uniform(-1, 1) * settings["neck_flexion_deg"]),
        "lower_head_scale": float(1 + rng.uniform(-1, 1) * settings["lower_head_scale"]),
        "head_shape_mm": float(settings["head_shape_mm"]),
        "fat_to_wm": _uniform(rng, settings["fat_to_wm"]),
        "nonbrain_contrast": _uniform(rng, settings["nonbrain_contrast"]),
        "subcutaneous_fat_mm": _uniform(rng, settings["subcutaneous_fat_mm"]),
        "skin_mm": float(settings["skin_mm"]),
        "texture_sd": float(settings["texture_sd"]),
        "ghost_level": _uniform(rng, settings["ghost_level"]),
    }


# --- geometry: neck, its bend, the lower head's size -----------------------------------------------


def _zooms(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(0))


def extended_head(model: dict, neck_mm: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The head model's ``head`` and ``head_mask`` with a neck below them; and how many slices were added.

    Slices below :data:`NECK_SOURCE_MM` are replaced by the cross-section there, its front-to-back
    depth shrinking about its back edge by up to :data:`NECK_RECESSION_MM` and its width growing
    below :data:`SHOULDER_START_MM`, down to ``neck_mm`` below the template's lowest slice. Cached
    in ``model`` (the process's cached head model) per ``neck_mm``.
    """
    if neck_mm <= 0:
        return model["head"], model["head_mask"], 0
    key = ("realism_extended_head", float(neck_mm))
    if key in model:
        return model[key]
    head, mask = model["head"], model["head_mask"] > 0.5
    zooms = _zooms(model["affine"])
    source_z = int(round(NECK_SOURCE_MM / zooms[2]))
    pad = int(np.ceil(neck_mm / zooms[2]))
    nx, ny, nz = head.shape
    section = head[:, :, source_z : source_z + 3].mean(axis=2)
    section_mask = mask[:, :, source_z].astype(np.float32)
    filled = np.argwhere(section_mask > 0.5)
    back_y, front_y = float(filled[:, 1].min()), float(filled[:, 1].max())
    mid_x = float(filled[:, 0].mean())
    out_head = np.zeros((nx, ny, nz + pad), np.float32)
    out_mask = np.zeros((nx, ny, nz + pad), np.float32)
    out_head[:, :, pad + source_z :] = head[:, :, source_z:]
    out_mask[:, :, pad + source_z :] = mask[:, :, source_z:]
    x, y = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="ij")
    for k in range(pad + source_z):
        depth_mm = (pad + source_z - k) * zooms[2]
        recession = NECK_RECESSION_MM * min(depth_mm / NECK_RECESSION_DEPTH_MM, 1.0)
        depth_scale = (front_y - back_y) / max(front_y - back_y - recession / zooms[1], 1.0)
        widening = 1 + SHOULDER_WIDENING * float(np.clip((depth_mm - SHOULDER_START_MM) / 60.0, 0, 1))
        points = [mid_x + (x - mid_x) / widening, back_y + (y - back_y) * depth_scale]
        out_head[:, :, k] = ndimage.map_coordinates(section, points, order=1, mode="constant", cval=0.0)
        out_mask[:, :, k] = ndimage.map_coordinates(section_mask, points, order=1, mode="constant", cval=0.0)
    model[key] = (out_head, out_mask, pad)
    return model[key]


def brain_distance_mm(model: dict) -> tuple[np.ndarray, np.ndarray]:
    """Distance (mm) from the intracranial region on a 2-voxel subgrid of the template, and that grid's voxel-to-template map.

    A 2-voxel grid suffices for a weight that varies over 10 mm and is ~8x cheaper than the full grid.
    """
    if "realism_brain_distance" in model:
        return model["realism_brain_distance"]
    icv = model["icv"] > 0.5
    coarse = ndimage.maximum_filter(icv, size=2)[::2, ::2, ::2]
    distance = ndimage.distance_transform_edt(~coarse, sampling=2 * _zooms(model["affine"]))
    model["realism_brain_distance"] = (distance.astype(np.float32), np.diag([0.5, 0.5, 0.5, 1.0]))
    return model["realism_brain_distance"]


def head_shape_field(rng: np.random.Generator, model: dict, sd_mm: float) -> tuple[np.ndarray, float, float]:
    """A smooth random displacement (mm, (3, gx, gy, gz)) on a grid of :data:`SHAPE_GRID_VOXELS` over the template and its neck.

    Gaussian-smoothed white noise (s.d. :data:`SHAPE_SMOOTHING_MM`) scaled to ``sd_mm``, as the
    subject's smooth warp (:func:`.deform.smooth_displacement`); returns it with the grid's spacing
    and its lowest slice (template voxels, below the template for the neck).
    """
    shape = np.asarray(model["head"].shape)
    spacing = SHAPE_GRID_VOXELS
    low_z = -float(np.ceil(150.0 / _zooms(model["affine"])[2]))  # room for the longest neck
    grid = tuple(int(np.ceil(n / spacing)) + 2 for n in (shape[0], shape[1], shape[2] - low_z))
    sigma = SHAPE_SMOOTHING_MM / (spacing * float(_zooms(model["affine"]).mean()))
    fields = []
    for _ in range(3):
        field = ndimage.gaussian_filter(rng.standard_normal(grid), sigma, mode="reflect")
        fields.append(sd_mm * field / max(float(field.std()), 1e-9))
    return np.stack(fields).astype(np.float32), float(spacing), low_z


def head_coordinates(coords: np.ndarray, model: dict, draw_: dict, shape_field=None) -> np.ndarray:
    """Template voxel coordinates for the head tissue: the neck bent and the lower head resized.

    ``coords`` (3, *shape) are the subject's template voxel coordinates (:func:`.deform.template_coordinates`).
    A subject point draws its head tissue from ``t - w(t) u(t)`` (template world ``t``; ``w`` is 0
    within :data:`BRAIN_MARGIN_MM` of the intracranial region, 1 beyond twice it), where ``u``
    (1) scales everything below the brain about the brain's lowest point by
    ``lower_head_scale`` (a face, jaw and neck larger or smaller than the average's for the same
    skull) and (2) turns the neck about a pivot below the chin by an angle that grows over
    :data:`NECK_BEND_LENGTH_MM` to ``neck_flexion_deg``. Both are smooth (no folding: their
    gradients stay below 0.5). ``shape_field`` (:func:`head_shape_field`) moves the scalp, face
    and neck further, beyond the skull (weight 0 within :data:`SCALP_MARGIN_MM` ``[0]`` of the
    intracranial region, 1 beyond ``[1]``): the head's outline differs from the average's.
    """
    affine = model["affine"]
    inverse = np.linalg.inv(affine)
    distance, to_coarse = brain_distance_mm(model)
    brain_bottom, pivot = _lower_head_points(model)
    scale = draw_["lower_head_scale"]
    angle = np.deg2rad(draw_["neck_flexion_deg"])
    out = np.empty_like(coords)
    for i in range(coords.shape[1]):  # one x-slab at a time: a full-grid float64 copy would need ~1 GB
        vox = coords[:, i].reshape(3, -1).astype(np.float64)
        t = affine[:3, :3] @ vox + affine[:3, 3:4]
        coarse = to_coarse[:3, :3] @ vox
        distance_mm = ndimage.map_coordinates(distance, coarse, order=1, mode="nearest")
        w = np.clip((distance_mm - BRAIN_MARGIN_MM) / BRAIN_MARGIN_MM, 0, 1)
        below = 1 / (1 + np.exp((t[2] - brain_bottom[2]) / 8.0))  # smooth step: 1 below the brain
        u = np.zeros_like(t)
        u += (1 - 1 / scale) * below * (t - brain_bottom[:, None])
        depth = np.clip(pivot[2] - t[2], 0, None)
        bend = angle * np.minimum(depth / NECK_BEND_LENGTH_MM, 1.0)
        dy, dz = t[1] - pivot[1], t[2] - pivot[2]
        u[1] += dy - (np.cos(bend) * dy - np.sin(bend) * dz)
        u[2] += dz - (np.sin(bend) * dy + np.cos(bend) * dz)
        t -= w * u
        if shape_field is not None:
            field, spacing, low_z = shape_field
            near, far = SCALP_MARGIN_MM
            w_scalp = np.clip((distance_mm - near) / (far - near), 0, 1)
            grid = (vox - np.array([[0.0], [0.0], [low_z]])) / spacing
            for axis in range(3):
                t[axis] -= w_scalp * ndimage.map_coordinates(field[axis], grid, order=1, mode="nearest")
        out[:, i] = (inverse[:3, :3] @ t + inverse[:3, 3:4]).reshape(coords[:, i].shape).astype(coords.dtype)
    return out


def _lower_head_points(model: dict) -> tuple[np.ndarray, np.ndarray]:
    """The brain's lowest point (world mm, at the brain's centre in x and y) and the neck's pivot."""
    if "realism_points" not in model:
        affine = model["affine"]
        icv = np.argwhere(model["icv"] > 0.5)
        world = icv @ affine[:3, :3].T + affine[:3, 3]
        centre = world.mean(axis=0)
        bottom = np.array([centre[0], centre[1], world[:, 2].min()])
        chin = np.asarray(model["face_landmarks_mm"]["chin"], float)
        pivot = np.array([centre[0], centre[1], chin[2] - NECK_PIVOT_BELOW_CHIN_MM])
        model["realism_points"] = (bottom, pivot)
    return model["realism_points"]


# --- intensities: fat, muscle, skin, texture; ghosts in the air ------------------------------------


def template_fat_level(model: dict) -> float:
    """The mean head's brightest non-brain tissue relative to its white matter (95th percentile)."""
    if "realism_fat_level" not in model:
        head = (model["head_mask"] > 0.5) & (model["icv"] < 0.01)
        model["realism_fat_level"] = float(np.percentile(model["head"][head], 95) / model["template_wm_intensity"])
    return model["realism_fat_level"]


def head_tissue_signal(
    head_t1: np.ndarray, labels: np.ndarray, zooms, draw_: dict, fat_level: float, rng: np.random.Generator
) -> np.ndarray:
    """Non-brain T1w signal (WM = 1) of a real head from the mean head's (``head_t1``), on ``HEAD`` voxels only.

    A tone curve ``fat_to_wm x (t / fat_level) ** nonbrain_contrast`` keeps the mean head's fat
    (its 95th percentile ``fat_level``) brightest, raised to ``fat_to_wm``, and darkens muscle and
    the blur between tissues; a layer of fat ``subcutaneous_fat_mm`` thick lies ``skin_mm`` under
    the head's surface; smooth noise (:data:`TEXTURE_SCALE_MM`) of relative s.d. ``texture_sd``
    gives the tissue texture.
    """
    out = head_t1.copy()
    head = labels == HEAD
    curve = np.maximum(head_t1[head], 0)
    if draw_["fat_to_wm"] > 0:  # 0: the mean head's own intensities
        curve = draw_["fat_to_wm"] * np.power(curve / fat_level, draw_["nonbrain_contrast"])
        if draw_["subcutaneous_fat_mm"] > 0:
            # depth under the skin, whose surface is where the mean head's blurred edge reaches 30 %
            # of its fat level (its head mask reaches out into a fainter blur)
            tissue = labels != BACKGROUND
            tissue[head] = head_t1[head] >= 0.3 * fat_level
            for z in range(tissue.shape[2]):  # airway, sinuses and mouth are inside, not skin
                tissue[:, :, z] = ndimage.binary_fill_holes(tissue[:, :, z])
            depth = ndimage.distance_transform_edt(tissue, sampling=zooms)[head]
            skin, fat = draw_["skin_mm"], draw_["subcutaneous_fat_mm"]
            # 1 inside the layer, falling to 0 over one voxel at its edges (partial volume)
            layer = np.clip(np.minimum(depth - skin, skin + fat - depth) / max(min(zooms), 0.5) + 0.5, 0, 1)
            curve = curve + layer * (draw_["fat_to_wm"] - curve).clip(min=0)
    if draw_["texture_sd"] > 0:
        noise = ndimage.gaussian_filter(
            rng.standard_normal(labels.shape, dtype=np.float32), TEXTURE_SCALE_MM / np.asarray(zooms, float)
        )
        noise *= draw_["texture_sd"] / max(float(noise.std()), 1e-9)
        curve *= 1 + noise[head]
    out[head] = curve
    return out


def add_ghost(image: np.ndarray, labels: np.ndarray, level: float, axis: int = 1) -> np.ndarray:
    """``image`` with an N/2 ghost of itself along ``axis`` (phase encoding, anterior-posterior) in the air only."""
    if level <= 0:
        return image
    ghost = np.roll(image, image.shape[axis] // 2, axis=axis)
    air = labels == BACKGROUND
    out = image.copy()
    out[air] += level * ghost[air]
    return out
