"""Privacy check: a frontal surface render of a head and a face detector run on it.

Re-identification from MRI works by rendering the skin surface and matching
the face (Schwarz et al. 2019, N Engl J Med 381:1684). We render the head's
surface from the front by ray casting in canonical RAS space (first voxel above
the head threshold along each anterior-posterior ray, shaded by its surface
normal) and run OpenCV's Haar cascade frontal face detector (Viola & Jones 2001;
Lienhart & Maydt 2002, ``haarcascade_frontalface_alt2.xml``, shipped in
opencv-python-headless 4.x) on the render.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .integrity import head_mask


def frontal_render(img: nib.Nifti1Image, size: int = 256, smooth_mm: float = 0.0) -> np.ndarray:
    """A uint8 frontal surface render of the head (superior up, subject's right on the image's left)."""
    import cv2

    canonical = nib.as_closest_canonical(img)
    data = np.asarray(canonical.dataobj, np.float32)
    # non-finite voxels hold no signal (a copy: ``data`` may be a view of the caller's array); the smoothing
    # below would otherwise spread a NaN over its neighbours
    data = np.where(np.isfinite(data), data, np.float32(0))
    zooms = canonical.header.get_zooms()[:3]
    data = ndimage.gaussian_filter(data, sigma=[1.0 / z for z in zooms])
    head = head_mask(data)
    head = ndimage.binary_opening(head, iterations=1)
    # depth (mm) of the first tissue voxel seen from the front (anterior = high y index in RAS)
    ny = head.shape[1]
    hit = head[:, ::-1, :]
    any_hit = hit.any(axis=1)
    first = np.argmax(hit, axis=1).astype(np.float32)
    depth = np.where(any_hit, first * zooms[1], ny * zooms[1])  # (x, z), mm from the front of the box
    # smooth the depth map a little: voxel steps would otherwise shade as terraces
    if smooth_mm > 0:
        depth = ndimage.gaussian_filter(depth, [smooth_mm / zooms[0], smooth_mm / zooms[2]])
    # surface normal from the depth map gradient; light from the viewer, slightly above
    dzx, dzz = np.gradient(depth, zooms[0], zooms[2])
    normal = np.stack([-dzx, np.ones_like(dzx), -dzz])
    normal /= np.linalg.norm(normal, axis=0, keepdims=True)
    light = np.array([0.0, 1.0, 0.35])
    light /= np.linalg.norm(light)
    shade = np.clip(np.tensordot(light, normal, axes=1), 0, 1)
    shade = np.where(any_hit, 0.15 + 0.85 * shade, 0.0)
    image = (shade.T[::-1, :] * 255).astype(np.uint8)  # rows: superior at top; cols: x (R->L after flip)
    image = image[:, ::-1]  # radiological left-right: viewer faces the subject
    height = max(1, int(round(image.shape[0] * zooms[2] / zooms[0] * size / image.shape[1])))
    return cv2.resize(image, (size, height), interpolation=cv2.INTER_LINEAR)


def detect_faces(render: np.ndarray) -> int:
    """Number of frontal faces OpenCV's Haar cascade finds on a render."""
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml"))
    if cascade.empty():
        raise RuntimeError("OpenCV's haarcascade_frontalface_alt2.xml is missing (opencv-python-headless>=5?)")
    equalised = cv2.equalizeHist(render)
    faces = cascade.detectMultiScale(equalised, scaleFactor=1.05, minNeighbors=3, minSize=(40, 40))
    return int(len(faces))


def render_and_detect(img: nib.Nifti1Image, png: str | Path | None = None) -> dict:
    """Render the head from the front, detect faces, optionally save the PNG."""
    import cv2

    from .io import image_nonfinite_counts

    render = frontal_render(img)
    n_faces = detect_faces(render)
    out = {
        "faces_detected": n_faces,
        "face_detected": n_faces > 0,
        "detector": "opencv haarcascade_frontalface_alt2",
        "opencv": cv2.__version__,
        "nonfinite_voxels": image_nonfinite_counts(img)["nonfinite_voxels"],
    }
    if png is not None:
        from .io import atomic_path

        png = Path(png)
        with atomic_path(png) as tmp:
            cv2.imwrite(str(tmp), render)
        out["render"] = str(png)
    return out
