"""The head's skin surface as a mesh, rendered off-screen from several viewpoints.

The surface is the iso-surface of the (lightly smoothed) head mask,
:func:`defacebench.integrity.head_mask`, by marching cubes (Lorensen & Cline 1987,
SIGGRAPH 21:163; scikit-image's implementation). It is rendered with VTK through pyvista
off-screen (EGL or OSMesa, no display), shaded under VTK's default light kit, the
way re-identification studies render MRI faces (Schwarz et al. 2019, N Engl J Med 381:1684).

Framing uses only parts of the head that defacing keeps: the head's left-right extent (its
width ``W``), the top of the head, and the front of the skull vault (the head's most anterior
point above the eyes). A full and a defaced image of one head are therefore seen through the
same camera, and the face sits at the same place in both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..integrity import head_mask

#: Viewpoints: name -> (yaw, pitch) in degrees. Positive yaw moves the camera towards +x (in RAS the
#: subject's right), positive pitch raises it. Frontal and +-30 deg yaw, +-15 deg pitch
#: span the poses of face photographs that recognition models are trained on.
VIEWPOINTS = {
    "frontal": (0.0, 0.0),
    "yaw+30": (30.0, 0.0),
    "yaw-30": (-30.0, 0.0),
    "pitch+15": (0.0, 15.0),
    "pitch-15": (0.0, -15.0),
}
#: Render size (pixels, square).
RENDER_SIZE = 512
#: Gaussian smoothing (mm, s.d.) of the head mask before marching cubes: removes the voxel steps that
#: would otherwise shade as terraces and read as texture to a face model; well below facial features.
SMOOTH_MM = 1.5
#: Mesh resolution (mm): marching cubes' step on finer grids (more triangles only slow the render).
MESH_STEP_MM = 1.5
#: Camera framing in units of the head's width W: focal point below the top of the head and behind
#: the front of the vault; camera distance; vertical field of view. Chosen on the real face scans so
#: the face, from brow to chin, fills the middle of the render at every viewpoint.
FOCAL_BELOW_TOP_W = 0.75
FOCAL_BEHIND_VAULT_W = 0.35
CAMERA_DISTANCE_W = 2.6
VIEW_ANGLE_DEG = 30.0
#: Skin tone of the rendered surface (RGB 0-1): face models are trained on skin; an untextured grey
#: or white surface changes nothing geometric but sits further from their training data.
SKIN_RGB = (0.87, 0.72, 0.62)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in world mm (RAS): position, focal point, up vector, vertical view angle."""

    position: np.ndarray
    focal_point: np.ndarray
    up: np.ndarray
    view_angle_deg: float

    def project(self, points: np.ndarray, size: int = RENDER_SIZE) -> np.ndarray:
        """Pixel (column, row) of world points (n, 3) in a square render of ``size`` (row 0 at the top)."""
        forward = self.focal_point - self.position
        forward = forward / np.linalg.norm(forward)
        right = np.cross(forward, self.up)
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        rel = np.asarray(points, float) - self.position
        depth = rel @ forward
        focal_px = (size / 2) / np.tan(np.deg2rad(self.view_angle_deg) / 2)
        col = size / 2 + focal_px * (rel @ right) / depth
        row = size / 2 - focal_px * (rel @ up) / depth
        return np.stack([col, row], axis=1)


def surface_mask(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """The head as a smoothed occupancy map (0-1) in canonical (RAS) voxel order, and its affine.

    Non-finite voxels hold no tissue. The largest connected part of the head mask, holes
    filled, is kept (noise specks and a separate shoulder would otherwise become surfaces).
    """
    canonical = nib.as_closest_canonical(img)
    data = np.asarray(canonical.dataobj, np.float32)
    if data.ndim > 3:
        data = data.reshape(data.shape[:3] + (-1,))[..., 0]
    data = np.where(np.isfinite(data), data, np.float32(0))
    zooms = np.asarray(canonical.header.get_zooms()[:3], float)
    # a little smoothing before the threshold, as the detector-based check does: noise would otherwise
    # put holes in the skin and islands in the air
    mask = head_mask(ndimage.gaussian_filter(data, 1.0 / zooms))
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ValueError("no head found in the image (no voxel above the head threshold)")
    if n > 1:
        mask = labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    mask = ndimage.binary_fill_holes(mask)
    occupancy = ndimage.gaussian_filter(mask.astype(np.float32), SMOOTH_MM / zooms)
    return occupancy, canonical.affine


def head_mesh(img: nib.Nifti1Image):
    """The skin surface (pyvista ``PolyData``, world mm, RAS) by marching cubes at the 0.5 level."""
    import pyvista as pv
    from skimage import measure

    occupancy, affine = surface_mask(img)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    step = max(1, int(round(MESH_STEP_MM / float(zooms.min()))))
    # padded by one voxel of air so that a head cut by the field of view still gets a closed surface
    verts, faces, _, _ = measure.marching_cubes(np.pad(occupancy, 1), 0.5, step_size=step, allow_degenerate=False)
    verts = verts - 1.0
    world = verts @ affine[:3, :3].T + affine[:3, 3]
    return pv.PolyData(world, np.column_stack([np.full(len(faces), 3), faces]).ravel())


def head_frame(points: np.ndarray) -> tuple[float, float, float, float]:
    """The head's left-right middle, width, top and the front of its vault (mm), from surface points (n, 3).

    The front of the vault is the most anterior surface point within 0.45 head widths of the top:
    above the eyes and nose, where no defacing method cuts.
    """
    lo, hi = points.min(0), points.max(0)
    width = float(hi[0] - lo[0])
    top = float(hi[2])
    vault = points[points[:, 2] > top - 0.45 * width]
    front = float(vault[:, 1].max()) if len(vault) else float(hi[1])
    return float(lo[0] + hi[0]) / 2, width, top, front


def cameras(points: np.ndarray, viewpoints: dict | None = None) -> dict[str, Camera]:
    """One camera per viewpoint, framed on the parts of the head that defacing keeps (module docstring)."""
    viewpoints = VIEWPOINTS if viewpoints is None else viewpoints
    mid, width, top, front = head_frame(points)
    focal = np.array([mid, front - FOCAL_BEHIND_VAULT_W * width, top - FOCAL_BELOW_TOP_W * width])
    return {
        name: Camera(
            focal + CAMERA_DISTANCE_W * width * view_direction(yaw, pitch),
            focal,
            np.array([0.0, 0.0, 1.0]),
            VIEW_ANGLE_DEG,
        )
        for name, (yaw, pitch) in viewpoints.items()
    }


def view_direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Unit vector from the head towards the camera (RAS: +y anterior, +x the subject's right, +z superior)."""
    y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    return np.array([np.sin(y) * np.cos(p), np.cos(y) * np.cos(p), np.sin(p)])


def face_box_corners(points: np.ndarray) -> np.ndarray:
    """Corners (8, 3) of the box where a face is expected, from the parts of the head defacing keeps.

    Adult head proportions (Farkas 1994, Anthropometry of the Head and Face): the brow lies about
    0.5-0.6 head widths below the top of the head and the chin about 1.35-1.5; the face spans about 0.8 head
    widths across the cheeks. The box's depth runs from the front of the vault forward by 0.2 W
    (the nose). An attacker who sees no face found by a detector crops there, as one would by hand.
    """
    mid, width, top, front = head_frame(points)
    xs = (mid - 0.4 * width, mid + 0.4 * width)
    ys = (front - 0.1 * width, front + 0.2 * width)
    zs = (top - 1.35 * width, top - 0.5 * width)
    return np.array([[x, y, z] for x in xs for y in ys for z in zs])


def expected_face_box(camera: Camera, corners: np.ndarray, size: int = RENDER_SIZE) -> tuple[int, int, int, int]:
    """The expected face box (left, top, right, bottom) in a render: the projected corners' bounding box."""
    px = camera.project(corners, size)
    left, top = np.clip(px.min(0), 0, size - 1)
    right, bottom = np.clip(px.max(0), 0, size - 1)
    return int(left), int(top), int(right), int(bottom)


def _prefer_egl() -> None:
    """Ask VTK for an EGL window unless the user chose one: without a display VTK would first try X."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def render_views(mesh, views: dict[str, Camera], size: int = RENDER_SIZE) -> dict[str, np.ndarray]:
    """RGB uint8 renders (size x size x 3) of ``mesh`` through each camera; one VTK window for all views."""
    _prefer_egl()
    import pyvista as pv

    plotter = pv.Plotter(off_screen=True, window_size=(size, size))
    try:
        plotter.set_background("black")
        plotter.add_mesh(mesh, color=SKIN_RGB, smooth_shading=True, specular=0.15, diffuse=0.85, ambient=0.1)
        renders = {}
        for name, cam in views.items():
            plotter.camera_position = [tuple(cam.position), tuple(cam.focal_point), tuple(cam.up)]
            plotter.camera.view_angle = cam.view_angle_deg
            plotter.camera.clipping_range = (1.0, 10 * float(np.linalg.norm(cam.position - cam.focal_point)))
            plotter.render()  # a screenshot alone returns the last frame, not this camera's
            renders[name] = np.ascontiguousarray(plotter.screenshot(None, return_img=True)[..., :3])
        return renders
    finally:
        plotter.close()


def render_head(img: nib.Nifti1Image, viewpoints: dict | None = None, size: int = RENDER_SIZE):
    """Renders of the head's surface from each viewpoint and the expected face box in each."""
    mesh = head_mesh(img)
    points = np.asarray(mesh.points)
    views = cameras(points, viewpoints)
    corners = face_box_corners(points)
    return render_views(mesh, views, size), {name: expected_face_box(cam, corners, size) for name, cam in views.items()}
