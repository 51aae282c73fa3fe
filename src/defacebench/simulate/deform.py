"""Where each subject voxel comes from in the head template: pose, field of view, smooth warp, mass effect.

A subject is the template head moved by a rigid pose with a head-size
scaling (:func:`draw_pose`), seen through a scanner field of view that may be
shifted or cut off below the chin (:func:`field_of_view`), warped by a smooth
random displacement (:func:`smooth_displacement`; random smooth fields as in
data augmentation for segmentation, e.g. Billot et al. 2023, SynthSeg,
Med Image Anal 86:102789) and, for a tumour, pushed outward around it
(:func:`mass_effect`). The whole mapping is evaluated on a coarse grid
and interpolated (it is smooth), then every template map is resampled
ONCE with :func:`sample` (scipy ``map_coordinates``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Scanner field of view (mm) along x (left-right), y (posterior-anterior), z (inferior-superior).
FIELD_OF_VIEW_MM = (176.0, 240.0, 240.0)
#: Spacing (mm) of the coarse grid on which the subject-to-template mapping is evaluated.
COARSE_SPACING_MM = 4.0


@dataclass(frozen=True)
class Pose:
    """Subject world = ``linear @ (template world - centre) + centre + shift`` (mm, RAS)."""

    linear: np.ndarray  # rotation @ diag(scale)
    centre: np.ndarray  # template-world point the head turns and scales about
    shift: np.ndarray
    pitch_deg: float
    roll_deg: float
    yaw_deg: float
    scale: np.ndarray  # per-axis head-size scaling

    def to_subject(self, template_world: np.ndarray) -> np.ndarray:
        """Template-world points (3, n) to subject-world points."""
        return self.linear @ (template_world - self.centre[:, None]) + (self.centre + self.shift)[:, None]

    def to_template(self, subject_world: np.ndarray) -> np.ndarray:
        """Subject-world points (3, n) to template-world points (inverse of :meth:`to_subject`)."""
        return np.linalg.inv(self.linear) @ (subject_world - (self.centre + self.shift)[:, None]) + self.centre[:, None]


def rotation_matrix(pitch_deg: float, roll_deg: float, yaw_deg: float) -> np.ndarray:
    """Rotation about x (pitch, nodding), then y (roll), then z (yaw), in RAS."""
    p, r, y = np.deg2rad([pitch_deg, roll_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_pose(
    rng: np.random.Generator, centre: np.ndarray, max_pitch_deg: float, head_scale_range=(0.92, 1.08)
) -> Pose:
    """A random head pose: pitch up to ``max_pitch_deg``, small roll and yaw, head size and position."""
    scale = rng.uniform(*head_scale_range) * (1 + rng.uniform(-0.03, 0.03, 3))
    pitch = float(rng.uniform(-1, 1) * max_pitch_deg)
    roll, yaw = (float(v) for v in rng.uniform(-5, 5, 2))
    linear = rotation_matrix(pitch, roll, yaw) @ np.diag(scale)
    return Pose(linear, np.asarray(centre, float), rng.uniform(-6, 6, 3), pitch, roll, yaw, scale)


def field_of_view(
    rng: np.random.Generator, head_centre: np.ndarray, voxel_size: float, chin_cut: bool
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS output grid: the scanner's box around the head, shifted at random.

    With ``chin_cut`` the box moves up by 20-40 mm, so it ends above the chin
    (as in scans planned on the brain); otherwise it may still clip the nose
    or the top of the head a little.
    """
    shape = tuple(int(round(f / voxel_size)) for f in FIELD_OF_VIEW_MM)
    offset = rng.uniform(-5, 5, 3)
    offset[1] += rng.uniform(-4, 10)  # positive: box moves forward, negative: the nose nears its edge
    offset[2] += rng.uniform(20, 40) if chin_cut else rng.uniform(-10, 5)
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = np.asarray(head_centre) + offset - voxel_size * (np.asarray(shape) - 1) / 2
    return affine, shape


def smooth_displacement(shape, rng: np.random.Generator, amplitude: float, sigma: float) -> np.ndarray:
    """A (3, *shape) smooth random displacement: Gaussian-smoothed white noise scaled to ``amplitude`` s.d.

    ``sigma`` (grid points) sets the smoothness; with ``amplitude`` well below
    ``sigma`` the warp cannot fold.
    """
    fields = []
    for _ in range(3):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
        fields.append(amplitude * field / max(float(field.std()), 1e-9))
    return np.stack(fields)


def mass_effect(points: np.ndarray, centre: np.ndarray, radius_mm: float, strength: float) -> np.ndarray:
    """Where subject points (3, n) came from before a mass at ``centre`` pushed tissue outward.

    ``x -> c + (x - c)(1 - k exp(-|x - c|^2 / s^2))``: points near the mass
    draw from closer to its centre, so surrounding tissue appears displaced.
    Monotone along every ray for ``k < 1`` (no folding).
    """
    d = points - centre[:, None]
    r2 = (d**2).sum(0) / radius_mm**2
    return centre[:, None] + d * (1 - strength * np.exp(-r2))


#: Ranges (uniform) of the face shape parameters: millimetres, except the two widths (relative).
#: Spread of adult faces (Farkas 1994, Anthropometry of the Head and Face; s.d. of nasal protrusion
#: ~2-3 mm, of chin projection and lower face height ~4-5 mm, of face width ~4 %), each range about
#: +-2 s.d., so simulated faces differ as much as people's do, not more.
FACE_SHAPE_RANGES = {
    "nose_protrusion_mm": (-5.0, 6.0),  # nose tip forward (+) or back
    "nose_width": (-0.2, 0.3),  # relative widening of the nose
    "chin_protrusion_mm": (-6.0, 6.0),  # chin forward (+) or back
    "chin_drop_mm": (-6.0, 6.0),  # chin lower (+, a longer lower face) or higher
    "cheek_fullness_mm": (-4.0, 6.0),  # cheeks outward (+) or in
    "brow_protrusion_mm": (-3.0, 5.0),  # brow ridge forward (+) or back
    "face_width": (-0.08, 0.08),  # relative width of the face below the brow
}
#: Extent (s.d., mm) of each feature's deformation around its landmark: x, y, z.
FACE_FEATURE_SD_MM = {
    "nose": (9.0, 12.0, 15.0),
    "chin": (18.0, 14.0, 12.0),
    "cheek": (14.0, 16.0, 16.0),
    "brow": (28.0, 10.0, 9.0),
}


def draw_face_shape(rng: np.random.Generator) -> dict:
    """Random face shape parameters, uniform in :data:`FACE_SHAPE_RANGES`."""
    return {name: float(rng.uniform(*bounds)) for name, bounds in FACE_SHAPE_RANGES.items()}


def _bump(points: np.ndarray, centre, sd_mm) -> np.ndarray:
    """An anisotropic Gaussian (peak 1) at ``centre`` over points (3, n)."""
    d = (points - np.asarray(centre, float)[:, None]) / np.asarray(sd_mm, float)[:, None]
    return np.exp(-0.5 * (d**2).sum(0))


def face_displacement(points: np.ndarray, landmarks: dict, face_shape: dict) -> np.ndarray:
    """How far (mm, (3, n)) the face shape moves template-world points (3, n), before the face-region weight.

    Smooth Gaussian bumps at the landmarks of the head model's face
    (:func:`defacebench.simulate.anatomy.face_landmarks`): the nose forward and wider, the chin
    forward and down, the cheeks outward, the brow forward, and the face below the brow wider about
    the midline. Each bump's slope stays well below 1 (amplitude / s.d. <= 0.7 at most), so the
    deformation cannot fold tissue.
    """
    u = np.zeros_like(points, dtype=np.float64)
    nose, chin, brow = (np.asarray(landmarks[k], float) for k in ("nose_tip", "chin", "brow"))
    g = _bump(points, nose, FACE_FEATURE_SD_MM["nose"])
    u[1] += face_shape["nose_protrusion_mm"] * g
    u[0] += face_shape["nose_width"] * (points[0] - nose[0]) * g
    g = _bump(points, chin, FACE_FEATURE_SD_MM["chin"])
    u[1] += face_shape["chin_protrusion_mm"] * g
    u[2] -= face_shape["chin_drop_mm"] * g
    for side in ("cheek_right", "cheek_left"):
        cheek = np.asarray(landmarks[side], float)
        outward = np.sign(cheek[0] - landmarks["midline_x"])
        u[0] += outward * face_shape["cheek_fullness_mm"] * _bump(points, cheek, FACE_FEATURE_SD_MM["cheek"])
    u[1] += face_shape["brow_protrusion_mm"] * _bump(points, brow, FACE_FEATURE_SD_MM["brow"])
    # the face below the brow: a wide, soft band centred between the nose and the chin
    band = np.exp(-0.5 * ((points[2] - (nose[2] + chin[2]) / 2) / 30.0) ** 2)
    u[0] += face_shape["face_width"] * (points[0] - landmarks["midline_x"]) * band
    return u


def template_coordinates(
    out_affine: np.ndarray,
    shape,
    template_affine: np.ndarray,
    pose: Pose,
    rng: np.random.Generator,
    warp_mm: float,
    mass=None,
    face=None,
) -> np.ndarray:
    """Template voxel coordinates (3, *shape) of every output voxel, float32.

    The mapping (output voxel -> subject world -> [mass effect] -> template
    world -> [face shape] -> template voxel + smooth warp) is evaluated on a grid of
    :data:`COARSE_SPACING_MM` and linearly interpolated to full resolution:
    exact for its affine part, and the rest varies over centimetres.
    ``face``: (landmarks, face shape, face-region weight map on the template grid); a
    subject point draws from ``t - w(t) u(t)`` (:func:`face_displacement`, weight ``w`` 0 outside
    the face region), the inverse of the face's deformation to first order.
    """
    voxel = float(np.sqrt((out_affine[:3, :3] ** 2).sum(0)).mean())
    coarse = tuple(max(2, int(np.ceil((n - 1) * voxel / COARSE_SPACING_MM)) + 1) for n in shape)
    axes = [np.linspace(0, n - 1, c) for n, c in zip(shape, coarse)]
    idx = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    world = out_affine[:3, :3] @ idx + out_affine[:3, 3:4]
    if mass is not None:
        world = mass_effect(world, *mass)
    template_world = pose.to_template(world)
    inverse = np.linalg.inv(template_affine)
    vox = inverse[:3, :3] @ template_world + inverse[:3, 3:4]
    if face is not None:
        landmarks, face_shape, weight_map = face
        weight = ndimage.map_coordinates(weight_map, vox, order=1, mode="constant", cval=0.0, prefilter=False)
        template_world = template_world - weight * face_displacement(template_world, landmarks, face_shape)
        vox = inverse[:3, :3] @ template_world + inverse[:3, 3:4]
    template_voxel = float(np.sqrt((template_affine[:3, :3] ** 2).sum(0)).mean())
    warp = smooth_displacement(coarse, rng, warp_mm / template_voxel, sigma=20.0 / COARSE_SPACING_MM)
    vox = vox.reshape((3, *coarse)) + warp
    # linear interpolation from the coarse grid, whose first/last points sit on the first/last voxels
    zoom = [(n - 1) / (c - 1) for n, c in zip(shape, coarse)]
    full = np.empty((3, *shape), np.float32)
    for axis in range(3):
        full[axis] = ndimage.zoom(vox[axis].astype(np.float32), zoom, order=1, grid_mode=False, output=np.float32)[
            : shape[0], : shape[1], : shape[2]
        ]
    return full


def sample(volume: np.ndarray, coordinates: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """``volume`` resampled at template voxel ``coordinates`` (3, *shape), float32; outside is ``cval``."""
    out = np.empty(coordinates.shape[1:], np.float32)
    ndimage.map_coordinates(volume, coordinates, output=out, order=order, mode="constant", cval=cval, prefilter=False)
    return out


def points_in_box(coordinates: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Boolean map of the ``coordinates`` (3, *shape) whose linear interpolation reads only voxels of ``box``."""
    inside = np.ones(coordinates.shape[1:], bool)
    for axis, sl in enumerate(box):
        inside &= (coordinates[axis] >= sl.start) & (coordinates[axis] <= sl.stop - 1)
    return inside


def sample_in_box(
    volume: np.ndarray, coordinates: np.ndarray, box: tuple[slice, ...], inside: np.ndarray, fill: float
) -> np.ndarray:
    """:func:`sample` (linear) at the points ``inside`` the template ``box``; ``fill`` elsewhere.

    The brain maps are non-zero in about a fifth of a head's field of view:
    interpolating only there is ~4x cheaper and, for a map that is ``fill``
    outside ``box``, gives the same values as sampling everywhere.
    """
    out = np.full(coordinates.shape[1:], fill, np.float32)
    offset = np.array([sl.start for sl in box], np.float32)[:, None]
    points = coordinates[:, inside] - offset
    out[inside] = ndimage.map_coordinates(
        np.ascontiguousarray(volume[box]), points, order=1, mode="constant", cval=fill, prefilter=False
    ).astype(np.float32)
    return out
