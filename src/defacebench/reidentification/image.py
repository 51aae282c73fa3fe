"""One image's privacy record: renders from each viewpoint, detections, and a face descriptor per view.

The descriptor is computed on the face dlib's HOG detector found, else on the box where the face
is expected from the head's proportions (:func:`.surface.face_box_corners`): an attacker crops a
render by hand when no detector fires, so a defaced head is still tried against the gallery.
Haar boxes are not used for it: dlib's landmark model was trained on its own detector's boxes, and
on 20 simulated full heads the full-head rank-1 rate was 17/20 with Haar boxes in between and 18/20
without. Which box was used is recorded per view.
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import io
from . import detect, embed, surface

RECORD_VERSION = 1


def _write_png(rgb: np.ndarray, path: Path) -> None:
    import cv2

    with io.atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")


def face_box(hog: list, expected: detect.Box) -> tuple[str, detect.Box]:
    """The box to describe: HOG's best, else the expected one (module docstring)."""
    if hog:
        return "hog", hog[0][0]
    return "expected", expected


def privacy_record(
    img: nib.Nifti1Image,
    render_dir: str | Path | None = None,
    viewpoints: dict | None = None,
    embed_faces: bool = True,
    size: int = surface.RENDER_SIZE,
) -> dict:
    """Render, detect and describe one image; returns the JSON-ready record (timings in seconds).

    ``render_dir``: where to write ``view-<name>.png`` (nothing written when None).
    ``embed_faces``: False skips dlib entirely (detection by Haar only), for a machine without it.
    """
    started = time.perf_counter()
    renders, expected = surface.render_head(img, viewpoints, size)
    rendered = time.perf_counter()
    views, t_detect, t_embed = {}, 0.0, 0.0
    for name, rgb in renders.items():
        t0 = time.perf_counter()
        haar = detect.haar_faces(rgb)
        hog = detect.hog_faces(rgb) if embed_faces else []
        t1 = time.perf_counter()
        view = {
            "haar_faces": len(haar),
            "hog_faces": len(hog) if embed_faces else None,
            "hog_score": hog[0][1] if hog else None,
            "expected_box": list(expected[name]),
        }
        if embed_faces:
            source, box = face_box(hog, expected[name])
            view.update(box_source=source, box=list(box), descriptor=embed.face_descriptor(rgb, box).tolist())
        t_detect += t1 - t0
        t_embed += time.perf_counter() - t1
        if render_dir is not None:
            png = Path(render_dir) / f"view-{name}.png"
            _write_png(rgb, png)
            view["render"] = str(png)
        views[name] = view
    record = {
        "record_version": RECORD_VERSION,
        "views": views,
        "detectors": {
            "haar": "opencv haarcascade_frontalface_alt2",
            "hog": "dlib get_frontal_face_detector" if embed_faces else None,
        },
        "descriptor": f"dlib {embed.DESCRIPTOR_MODEL} on {embed.LANDMARK_MODEL}" if embed_faces else None,
        "render_s": rendered - started,
        "detect_s": t_detect,
        "embed_s": t_embed,
        "total_s": time.perf_counter() - started,
    }
    return record
