"""Brain extraction re-implemented from Smith (2002), "Fast robust automated brain extraction",
Hum Brain Mapp 17:143-155, with bet2's default parameters (f = 0.5, g = 0).

This is an open re-implementation written from the paper's description, not FSL's program: the
records name it ``bet_like``. It exists because the classic SIENAX pipeline that de Sitter et al.
(2020) measured starts with this algorithm, whose first steps look at the *whole head* (robust
intensity range, centre of gravity, head radius), so that defacing can move its result.

Algorithm (section numbers of Smith 2002, "Methods"):

1. **Robust range and threshold.** ``t2`` and ``t98`` are the 2nd and 98th percentiles of all voxel
   intensities; ``t = t2 + 0.1 (t98 - t2)`` roughly separates head from background.
2. **Centre of gravity and radius.** The COG is the mean world position of the voxels above ``t``,
   each weighted by its intensity above ``t2`` limited to ``t98 - t2``; the head radius ``r`` is
   that of a sphere with the volume of those voxels, ``r = (3 V / 4 pi)^(1/3)``. ``tm`` is the
   median intensity of the voxels between ``t2`` and ``t98`` within ``r`` of the COG.
3. **Tessellated sphere.** An icosahedron subdivided four times (2562 vertices, as bet2), centred
   at the COG with radius ``r / 2``.
4. **Surface deformation** (1000 iterations). For each vertex with outward unit normal ``n`` and
   ``s`` = (mean of its neighbours) - (vertex), split ``s`` into ``s_n = (s . n) n`` and
   ``s_t = s - s_n``; with ``l`` the mean edge length of the whole surface the update is

   * ``u1 = 0.5 s_t`` (tangential: keeps vertices evenly spaced),
   * ``u2 = f2 s_n`` with ``f2 = (1 + tanh(F (1/r_c - E))) / 2``, ``1/r_c = 2 |s_n| / l^2`` (local
     curvature), ``E = (1/rmin + 1/rmax) / 2``, ``F = 6 / (1/rmin - 1/rmax)``, ``rmin = 3.33 mm``,
     ``rmax = 10 mm`` (smooths strongly where the surface bends more sharply than the brain does),
   * ``u3 = 0.05 f3 l n`` with ``f3 = 2 (Imin - tl) / (Imax - t2)``,
     ``tl = (Imax - t2) bt + t2``, ``Imin = max(t2, min(tm, I(0), I(1), ..., I(d1)))``,
     ``Imax = min(tm, max(t, I(0), I(1), ..., I(d2)))``, ``I(d)`` the image at ``d`` mm along the
     inward normal, ``bt`` the fractional threshold ``f`` (bet2's ``-f``; default 0.5), which the
     vertical gradient ``g`` (bet2's ``-g``) makes ``bt + g (z - z_cog) / r`` (clipped to [0, 1]):
     positive ``g`` gives a larger outline at the bottom;

   ``u = u1 + u2 + u3``, applied to all vertices at once.
5. **Self-intersection.** After the last iteration the surface is tested: over the vertex pairs
   now closer than the mean edge length ``ml``, the score
   ``sum (|x_i - x_j| / ml - |x0_i - x0_j| / ml0)^2`` (``x0`` the starting sphere) is large when
   vertices that started far apart have met; above ``SELF_INTERSECTION_THRESHOLD`` the deformation
   is rerun from the sphere with a much stronger normal smoothing (u2): ``rmin`` and ``rmax``
   doubled at each rerun (up to three), for the whole rerun.
6. **Mask.** The surface is drawn onto the image grid and its inside filled.

Where this differs from bet2 (see docs/bet_like.md):

* everything is computed in world (mm) coordinates through the affine, so any orientation and
  anisotropic voxels give the same surface in world space; bet2 works in voxel x mm coordinates of
  the stored axes (the gradient ``g`` uses the world z axis here, the third voxel axis in bet2);
* ``d1 = 7 mm``, ``d2 = 3 mm`` and the self-intersection score and threshold follow bet2's
  defaults as documented by its ports; how much smoother a rerun is (``rmin``, ``rmax`` x 2, 4,
  8) is this module's choice (the paper says "a much higher smoothness constraint"), and a surface
  that leaves the field of view counts as self-intersecting (it has folded and runs away);
* samples beyond the field of view read as ``t2`` (background), so the surface cannot leave the
  image through a neck cut by the field of view;
* the mask holds the voxels whose centres are inside the surface (bet2 adds every voxel the
  surface passes through);
* ``t2``/``t98`` are exact percentiles of all voxels (FSL uses a histogram);
* no final surface-based "smoothing of the mask" or skull-edge refinement (bet2's optional
  ``-R``, ``-S``, ``-B`` steps are not implemented).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage, sparse
from scipy.spatial import cKDTree

from ..records import AnalysisFailure

METHOD = "bet_like (re-implementation after Smith 2002, Hum Brain Mapp 17:143)"

RMIN_MM = 3.33
RMAX_MM = 10.0
#: How far along the inward normal Imin (d1) and Imax (d2) are searched (mm; bet2's values).
D1_MM = 7.0
D2_MM = 3.0
#: Above this self-intersection score the deformation is rerun with stronger smoothing (bet2's value).
SELF_INTERSECTION_THRESHOLD = 4000.0
ICOSAHEDRON_SUBDIVISIONS = 4
#: A surface with a vertex this far outside the field of view has folded and runs away (see deform_surface).
ESCAPE_MARGIN_MM = 20.0


# --- tessellated sphere -----------------------------------------------------------------------------


def icosphere(subdivisions: int = ICOSAHEDRON_SUBDIVISIONS) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere tessellated by subdividing an icosahedron: (vertices (n, 3), faces (m, 3)).

    Each subdivision splits every triangle into four at its edge midpoints (pushed onto the
    sphere): 12, 42, 162, 642, 2562 vertices. Faces are ordered counter-clockwise seen from
    outside, so that ``cross(b - a, c - a)`` points outward.
    """
    phi = (1 + 5**0.5) / 2
    vertices = np.array(
        [
            [-1, phi, 0],
            [1, phi, 0],
            [-1, -phi, 0],
            [1, -phi, 0],
            [0, -1, phi],
            [0, 1, phi],
            [0, -1, -phi],
            [0, 1, -phi],
            [phi, 0, -1],
            [phi, 0, 1],
            [-phi, 0, -1],
            [-phi, 0, 1],
        ],
        float,
    )
    faces = np.array(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ]
    )
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        midpoints = vertices[unique[:, 0]] + vertices[unique[:, 1]]
        midpoints /= np.linalg.norm(midpoints, axis=1, keepdims=True)
        mid = len(vertices) + inverse.reshape(3, -1)  # midpoint index of edges (01, 12, 20) per face
        a, b, c = faces.T
        ab, bc, ca = mid
        faces = np.concatenate(
            [np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)]
        )
        vertices = np.concatenate([vertices, midpoints])
    outward = np.einsum(
        "ij,ij->i",
        np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]),
        vertices[faces].mean(axis=1),
    )
    if not (outward > 0).all():
        raise AssertionError("icosphere faces are not consistently oriented outward")
    return vertices, faces


def mesh_operators(n_vertices: int, faces: np.ndarray) -> tuple[np.ndarray, sparse.csr_matrix, sparse.csr_matrix]:
    """Unique edges (k, 2), the neighbour-averaging matrix (n x n) and the vertex-face incidence (n x m)."""
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    neighbour_mean = sparse.diags(1.0 / degree) @ adjacency
    incidence = sparse.csr_matrix(
        (np.ones(faces.size), (faces.ravel(), np.repeat(np.arange(len(faces)), 3))), shape=(n_vertices, len(faces))
    )
    return edges, neighbour_mean.tocsr(), incidence


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence: sparse.csr_matrix) -> np.ndarray:
    """Outward unit normal of each vertex: the sum of its faces' area-weighted normals, normalised."""
    face_normals = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    normals = incidence @ face_normals
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def mean_edge_length(vertices: np.ndarray, edges: np.ndarray) -> float:
    return float(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1).mean())


# --- image statistics (Smith 2002, "Estimation of basic image and brain parameters") -------------------


def robust_range(data: np.ndarray) -> tuple[float, float]:
    """BET's robust intensity range: the 2nd and 98th percentiles of the finite voxels (``t2``, ``t98``).

    Raises :class:`AnalysisFailure` when the image has no finite voxel.
    """
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise AnalysisFailure("brain_extraction", "image has no finite voxels")
    t2, t98 = np.percentile(finite, [2, 98])
    return float(t2), float(t98)


def head_threshold(t2: float, t98: float) -> float:
    """BET's head/background threshold ``t = t2 + 0.1 (t98 - t2)`` (Smith 2002)."""
    return t2 + 0.1 * (t98 - t2)


def head_parameters(data: np.ndarray, affine: np.ndarray) -> dict:
    """``t2``, ``t98``, ``t``, centre of gravity (world mm), head radius (mm) and ``tm``.

    Raises :class:`AnalysisFailure` when the image has no usable range or too few head voxels.
    """
    t2, t98 = robust_range(data)
    if not t98 > t2:
        raise AnalysisFailure("brain_extraction", f"robust intensity range is empty (t2 = t98 = {t2:g})")
    t = head_threshold(t2, t98)
    above = np.nonzero(data > t)
    weights = np.minimum(data[above] - t2, t98 - t2)
    cog_voxel = np.array([(index * weights).sum() for index in above]) / weights.sum()
    cog = affine[:3, :3] @ cog_voxel + affine[:3, 3]
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    radius = float((3 * len(weights) * voxel_mm3 / (4 * np.pi)) ** (1 / 3))
    if len(weights) < 100:
        raise AnalysisFailure("brain_extraction", f"only {len(weights)} voxels above the head threshold")
    band = np.nonzero((data > t2) & (data < t98))
    world = affine[:3, :3] @ np.stack(band).astype(float) + affine[:3, 3:4]
    within = ((world - cog[:, None]) ** 2).sum(axis=0) < radius**2
    if not within.any():
        raise AnalysisFailure("brain_extraction", "no voxels of the robust range within the head radius")
    tm = float(np.median(data[band][within]))
    return {"t2": t2, "t98": t98, "t": t, "tm": tm, "cog_mm": cog, "radius_mm": radius}


# --- surface deformation ----------------------------------------------------------------------------


class _ImageSampler:
    """Trilinear samples of the image at world points; ``outside`` beyond the field of view."""

    def __init__(self, data: np.ndarray, affine: np.ndarray, outside: float):
        self.data = np.asarray(data, np.float32)
        self.outside = float(outside)
        inverse = np.linalg.inv(affine)
        self.rotation, self.offset = inverse[:3, :3], inverse[:3, 3]

    def __call__(self, world: np.ndarray) -> np.ndarray:
        voxel = world.reshape(-1, 3) @ self.rotation.T + self.offset
        values = ndimage.map_coordinates(
            self.data, voxel.T, order=1, mode="constant", cval=self.outside, prefilter=False
        )
        return values.reshape(world.shape[:-1])


def _volume(image: nib.Nifti1Image) -> np.ndarray:
    """The image's voxels as a float32 3D array (a single-volume 4D image is taken as 3D)."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"expected a 3D image, got shape {image.shape}")
    return data


def _background_sampler(data: np.ndarray, affine: np.ndarray, t2: float) -> _ImageSampler:
    """Sampler that reads non-finite voxels and everything beyond the field of view as background (t2).

    With no samples beyond the field of view, the update's bounds (Imin = tm, Imax = t) would push
    a vertex that left the image outward for ever, which happens on real heads whose neck runs out
    of the field of view.
    """
    return _ImageSampler(np.nan_to_num(data, nan=t2), affine, outside=t2)


def self_intersection_score(vertices: np.ndarray, start: np.ndarray, edges: np.ndarray) -> float:
    """Smith (2002)'s self-intersection test: large when vertices that began far apart have met.

    Over vertex pairs now closer than the mean edge length ``ml``, sums
    ``(|x_i - x_j| / ml - |x0_i - x0_j| / ml0)^2``; on a surface that has folded through
    itself, pairs from opposite sides meet and each adds about the square of their starting
    distance in edge lengths.
    """
    ml, ml0 = mean_edge_length(vertices, edges), mean_edge_length(start, edges)
    pairs = cKDTree(vertices).query_pairs(ml, output_type="ndarray")
    if len(pairs) == 0:
        return 0.0
    now = np.linalg.norm(vertices[pairs[:, 0]] - vertices[pairs[:, 1]], axis=1) / ml
    before = np.linalg.norm(start[pairs[:, 0]] - start[pairs[:, 1]], axis=1) / ml0
    return float(((now - before) ** 2).sum())


def deform_surface(
    sample,
    start: np.ndarray,
    faces: np.ndarray,
    params: dict,
    *,
    fractional_threshold: float,
    vertical_gradient: float,
    iterations: int,
    curvature_scale: float = 1.0,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Deform the sphere ``start`` (world mm) for ``iterations`` steps of Smith (2002)'s update.

    ``sample`` maps world points (..., 3) to intensities. ``curvature_scale`` multiplies ``rmin``
    and ``rmax`` (a smoother surface, for reruns after a self-intersection). With ``limits``
    (world box corners), the deformation stops early once a vertex has left the box: a surface
    folded through itself has inward-facing patches whose intensity term pushes them outward
    without end, and going on would only cost time.
    """
    edges, neighbour_mean, incidence = mesh_operators(len(start), faces)
    rmin, rmax = curvature_scale * RMIN_MM, curvature_scale * RMAX_MM
    e_term = (1 / rmin + 1 / rmax) / 2
    f_term = 6 / (1 / rmin - 1 / rmax)
    t2, t, tm = params["t2"], params["t"], params["tm"]
    step = 1.0  # mm between intensity samples along the normal, as I(0), I(1), ... in the paper
    depths = np.arange(0.0, D1_MM + step / 2, step)
    near = depths <= D2_MM + 1e-9
    vertices = start.copy()
    for iteration in range(iterations):
        normals = vertex_normals(vertices, faces, incidence)
        s = neighbour_mean @ vertices - vertices
        s_n_length = np.einsum("ij,ij->i", s, normals)
        s_n = s_n_length[:, None] * normals
        s_t = s - s_n
        l = mean_edge_length(vertices, edges)
        inverse_radius = 2 * np.abs(s_n_length) / l**2
        f2 = (1 + np.tanh(f_term * (inverse_radius - e_term))) / 2
        profiles = sample(vertices[None, :, :] - depths[:, None, None] * normals[None, :, :])
        i_min = np.maximum(t2, np.minimum(tm, profiles.min(axis=0)))
        i_max = np.minimum(tm, np.maximum(t, profiles[near].max(axis=0)))
        bt = fractional_threshold
        if vertical_gradient:
            bt = np.clip(bt + vertical_gradient * (vertices[:, 2] - params["cog_mm"][2]) / params["radius_mm"], 0, 1)
        t_local = (i_max - t2) * bt + t2
        f3 = 2 * (i_min - t_local) / np.maximum(i_max - t2, 1e-12 * (params["t98"] - t2))
        vertices = vertices + 0.5 * s_t + f2[:, None] * s_n + (0.05 * l * f3)[:, None] * normals
        if limits is not None and iteration % 50 == 49 and ((vertices < limits[0]) | (vertices > limits[1])).any():
            break
    if not np.isfinite(vertices).all():
        raise AnalysisFailure("brain_extraction", "surface deformation diverged (non-finite vertices)")
    return vertices


# --- surface to mask --------------------------------------------------------------------------------


def surface_mask(vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """Voxels of the grid (``shape``, ``affine``) whose centres lie inside the closed surface (world mm).

    The triangles are drawn densely (points at most 0.4 voxel apart) onto the grid padded by one
    voxel, points outside the grid clipped onto the padding so that a surface leaving the field of
    view still closes, and the inside is filled (6-connected background). The voxels the surface
    passes through are then kept only if their centre is on the inner side of the nearest drawn
    point's triangle (bet2 keeps them all, which adds about half a voxel to the radius).
    """
    inverse = np.linalg.inv(affine)
    corners = vertices[faces] @ inverse[:3, :3].T + inverse[:3, 3]  # (m, 3 corners, 3) voxel coordinates
    # a linear map with negative determinant turns outward normals inward: undo it
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]) * np.sign(
        np.linalg.det(inverse[:3, :3])
    )
    longest = max(np.linalg.norm(corners[:, i] - corners[:, j], axis=-1).max() for i, j in ((0, 1), (1, 2), (2, 0)))
    n = max(1, int(np.ceil(longest / 0.4)))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n  # (p, 3)
    points = np.einsum("pk,mkd->mpd", bary, corners).reshape(-1, 3)
    point_face = np.repeat(np.arange(len(faces)), len(bary))
    padded = np.zeros(tuple(int(s) + 2 for s in shape[:3]), bool)
    index = np.clip(np.rint(points).astype(np.int64) + 1, 0, np.array(padded.shape) - 1)
    padded[index[:, 0], index[:, 1], index[:, 2]] = True
    filled = ndimage.binary_fill_holes(padded)
    drawn = np.argwhere(padded)
    centres = (drawn - 1).astype(float)
    _, nearest = cKDTree(points).query(centres)
    outside = np.einsum("ij,ij->i", centres - points[nearest], face_normals[point_face[nearest]]) > 0
    filled[tuple(drawn[outside].T)] = False
    return filled[1:-1, 1:-1, 1:-1]


# --- public entry points ----------------------------------------------------------------------------


def bet_like_surface(
    image: nib.Nifti1Image,
    fractional_threshold: float = 0.5,
    vertical_gradient: float = 0.0,
    iterations: int = 1000,
    max_reruns: int = 3,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The brain surface after Smith (2002): (vertices in world mm, faces, info).

    ``info``: the method, parameters, image statistics (t2, t98, t, tm, COG, radius), iterations
    per pass, the self-intersection score of each pass and whether a rerun happened. Raises
    :class:`AnalysisFailure` (stage ``brain_extraction``) when the image has no usable range, the
    deformation diverges or the surface still intersects itself after ``max_reruns`` reruns.
    """
    if not 0 < fractional_threshold < 1:
        raise ValueError(f"fractional_threshold must be in (0, 1), got {fractional_threshold}")
    if not -1 <= vertical_gradient <= 1:
        raise ValueError(f"vertical_gradient must be in [-1, 1], got {vertical_gradient}")
    data = _volume(image)
    affine = np.asarray(image.affine, float)
    params = head_parameters(data, affine)
    unit, faces = icosphere()
    start = params["cog_mm"] + 0.5 * params["radius_mm"] * unit
    sample = _background_sampler(data, affine, params["t2"])
    corners = (
        np.array(
            [[i, j, k] for i in (0, data.shape[0] - 1) for j in (0, data.shape[1] - 1) for k in (0, data.shape[2] - 1)],
            float,
        )
        @ affine[:3, :3].T
        + affine[:3, 3]
    )
    limits = (corners.min(axis=0) - ESCAPE_MARGIN_MM, corners.max(axis=0) + ESCAPE_MARGIN_MM)
    edges = mesh_operators(len(start), faces)[0]
    scores, scales = [], []
    for rerun in range(max_reruns + 1):
        # each rerun much smoother than the last: rmin and rmax doubled each time
        scales.append(2.0**rerun)
        vertices = deform_surface(
            sample,
            start,
            faces,
            params,
            fractional_threshold=fractional_threshold,
            vertical_gradient=vertical_gradient,
            iterations=iterations,
            curvature_scale=scales[-1],
            limits=limits,
        )
        escaped = ((vertices < limits[0]) | (vertices > limits[1])).any()
        scores.append(float("inf") if escaped else round(self_intersection_score(vertices, start, edges), 1))
        if scores[-1] <= SELF_INTERSECTION_THRESHOLD:
            break
    else:
        raise AnalysisFailure(
            "brain_extraction",
            f"bet_like surface intersects itself after {max_reruns} reruns "
            f"with stronger smoothing (scores {scores}; inf: left the field of view)",
        )
    info = {
        "method": METHOD,
        "fractional_threshold": fractional_threshold,
        "vertical_gradient": vertical_gradient,
        "t2": params["t2"],
        "t98": params["t98"],
        "t": params["t"],
        "tm": params["tm"],
        "cog_mm": [round(float(c), 2) for c in params["cog_mm"]],
        "radius_mm": round(params["radius_mm"], 2),
        "vertices": len(unit),
        "iterations": iterations,
        "passes": len(scores),
        "self_intersection_scores": scores,
        "curvature_scales": scales,
        "self_intersection_rerun": len(scores) > 1,
    }
    return vertices, faces, info


#: Head extent kept below the top of the head by :func:`robust_field_of_view` (FSL robustfov's default, 170 mm).
BRAIN_EXTENT_MM = 170.0

#: A slice belongs to the head when this fraction of the largest axial head cross-section lies in it (ignores
#: stray bright voxels in the air above the head).
HEAD_SLICE_FRACTION = 0.01


def robust_field_of_view(
    image: nib.Nifti1Image, brain_extent_mm: float = BRAIN_EXTENT_MM
) -> tuple[nib.Nifti1Image, dict]:
    """The image cut ``brain_extent_mm`` below the top of the head, as FSL's robustfov does before BET on whole heads.

    Neck and shoulders in the field of view pull BET's centre of gravity down and its median
    intensity below white matter (Smith 2002 assumes a head-sized field of view), so FSL's
    pipelines crop first (robustfov: 170 mm below the top of the head). Here the top of the head is
    the most superior axial slice (RAS-canonical) whose head cross-section (voxels above bet's
    threshold t2 + 0.1 (t98 - t2), opened to drop isolated noise voxels) holds at least :data:`HEAD_SLICE_FRACTION` of the largest one;
    FSL's robustfov finds it by registration to MNI152, so the cut can differ by a few mm. Returns
    the cropped canonical image and ``info`` (slices kept, the cut's height). A field of view
    already within the extent is returned whole (canonical).
    """
    canonical = nib.as_closest_canonical(image)
    data = _volume(canonical)
    # an opening drops isolated noise voxels of the air, which would otherwise lift the 'top' to the field's edge
    head = ndimage.binary_opening(data > head_threshold(*robust_range(data)), structure=np.ones((3, 3, 3), bool))
    area = head.sum(axis=(0, 1))
    if area.max() == 0:
        raise AnalysisFailure("brain_extraction", "no head voxel above the robust threshold")
    head_slices = np.flatnonzero(area >= HEAD_SLICE_FRACTION * area.max())
    top = int(head_slices[-1])
    slab = max(1, int(round(brain_extent_mm / float(canonical.header.get_zooms()[2]))))
    bottom = max(0, top + 1 - slab)
    info = {
        "robust_fov": {
            "brain_extent_mm": brain_extent_mm,
            "top_slice": top,
            "bottom_slice": bottom,
            "slices_removed": bottom,
            "method": "after FSL robustfov (top of head from intensities)",
        }
    }
    return (canonical.slicer[:, :, bottom:] if bottom > 0 else canonical), info


def bet_like_brain_mask(
    image: nib.Nifti1Image,
    fractional_threshold: float = 0.5,
    vertical_gradient: float = 0.0,
    iterations: int = 1000,
    max_reruns: int = 3,
    brain_extent_mm: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Brain mask (bool, on ``image``'s grid) by the surface of :func:`bet_like_surface`, and its info.

    ``fractional_threshold`` is bet2's ``-f`` (smaller values give a larger brain outline),
    ``vertical_gradient`` its ``-g`` (positive: larger outline at the bottom, smaller at the top).
    ``brain_extent_mm``: first cut the image that far below the top of the head
    (:func:`robust_field_of_view`; None: the whole field of view, as bet2 alone). ``info`` adds
    ``volume_ml``. Raises :class:`AnalysisFailure` (stage ``brain_extraction``) as
    :func:`bet_like_surface` does, and when the mask is empty.
    """
    fov_info: dict = {}
    target = image
    if brain_extent_mm is not None:
        target, fov_info = robust_field_of_view(image, brain_extent_mm)
    vertices, faces, info = bet_like_surface(target, fractional_threshold, vertical_gradient, iterations, max_reruns)
    # the surface is in world mm, so it fills the original grid directly, whatever was cropped
    mask = surface_mask(vertices, faces, image.affine, image.shape[:3])
    volume_ml = float(mask.sum() * abs(np.linalg.det(image.affine[:3, :3])) / 1000)
    if not mask.any():
        raise AnalysisFailure("brain_extraction", "bet_like surface encloses no voxel of the image")
    return mask, {**info, **fov_info, "volume_ml": round(volume_ml, 2)}


# --- skull (Smith 2002, "Skull and scalp surface estimation") ---------------------------------------

SKULL_SEARCH_MM = 30.0
SKULL_SMOOTHING_STEPS = 10


def skull_surface_like(
    image: nib.Nifti1Image,
    brain_vertices: np.ndarray,
    faces: np.ndarray,
    info: dict,
    search_mm: float = SKULL_SEARCH_MM,
) -> tuple[np.ndarray, dict]:
    """Outer skull surface found outward from the brain surface, after Smith (2002)'s skull estimate.

    For each vertex of the brain surface (:func:`bet_like_surface`, its ``info`` giving ``t2`` and
    ``t``), the image is sampled every 1 mm along the outward normal up to ``search_mm``:

    * the scalp's outer edge is the farthest sample above the head threshold ``t`` (with the next
      sample above it too, so that noise in the air does not count);
    * the skull is the darkest sample between the brain surface and that edge (bone is dark on T1w);
    * the outer skull surface is the first sample beyond the darkest one that rises halfway from it
      to the brightest sample beyond it (the scalp).

    The distances are then smoothed over the mesh (``SKULL_SMOOTHING_STEPS`` neighbour averages),
    because single profiles are noisy. Where no head tissue lies beyond the brain surface (cut by the
    field of view, or removed by defacing), the vertex keeps the brain surface (distance 0); ``info``
    reports that fraction, which is where defacing acts on a skull-based scaling.

    Returns (outer skull vertices in world mm, info). This is a simpler search than FSL's betsurf
    (Jenkinson et al. 2005), which fits inner and outer skull meshes and needs T2w for the best result.
    """
    sample = _background_sampler(_volume(image), image.affine, info["t2"])
    _, neighbour_mean, incidence = mesh_operators(len(brain_vertices), faces)
    normals = vertex_normals(brain_vertices, faces, incidence)
    depths = np.arange(0.0, search_mm + 0.5, 1.0)
    profiles = sample(brain_vertices[None, :, :] + depths[:, None, None] * normals[None, :, :])  # (depth, vertex)
    # head tissue: two consecutive samples above t (a single one may be noise in the air)
    head = profiles > info["t"]
    head[:-1] &= head[1:]
    head[-1] = False
    scalp_edge = len(depths) - 1 - np.argmax(head[::-1], axis=0)  # farthest such sample
    beyond_edge = np.arange(len(depths))[:, None] > scalp_edge[None, :]
    darkest = np.argmin(np.where(beyond_edge, np.inf, profiles), axis=0)
    after_min = np.arange(len(depths))[:, None] > darkest[None, :]
    brightest_after = np.max(np.where(after_min & ~beyond_edge, profiles, -np.inf), axis=0)
    skull_intensity = profiles[darkest, np.arange(profiles.shape[1])]
    halfway = skull_intensity + 0.5 * (brightest_after - skull_intensity)
    rises = after_min & (profiles >= halfway[None, :])
    has_scalp = (after_min & head & ~beyond_edge).any(axis=0)  # head tissue beyond the dark skull
    outer = np.where(rises.any(axis=0), depths[np.argmax(rises, axis=0)], depths[darkest])
    distance = np.where(has_scalp, outer, 0.0)
    for _ in range(SKULL_SMOOTHING_STEPS):
        distance = neighbour_mean @ distance
    skull = brain_vertices + distance[:, None] * normals
    return skull, {
        "method": "skull_surface_like (outward search after Smith 2002)",
        "search_mm": search_mm,
        "no_head_beyond_brain_fraction": round(float(1 - has_scalp.mean()), 4),
        "mean_brain_to_outer_skull_mm": round(float(distance.mean()), 2),
    }
