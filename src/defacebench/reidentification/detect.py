"""Face detection on a render: OpenCV's Haar cascade and dlib's HOG detector.

- Haar: Viola & Jones (2001, CVPR) boosted cascade, OpenCV's ``haarcascade_frontalface_alt2.xml``
  (Lienhart & Maydt 2002), shipped in opencv-python-headless 4.x (5.x wheels ship none).
- HOG: histograms of oriented gradients with a linear SVM (Dalal & Triggs 2005, CVPR), dlib's
  ``get_frontal_face_detector`` (King 2009, J Mach Learn Res 10:1755), in the dlib-bin wheel.

Both were trained on photographs; on untextured renders they respond to the face's shading.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

Box = tuple[int, int, int, int]  # left, top, right, bottom (pixels)


@lru_cache(maxsize=1)
def _haar():
    import cv2

    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml"))
    if cascade.empty():
        raise RuntimeError("OpenCV's haarcascade_frontalface_alt2.xml is missing (opencv-python-headless>=5?)")
    return cascade


def haar_faces(rgb: np.ndarray) -> list[Box]:
    """Faces OpenCV's Haar cascade finds (equalised grey image; :mod:`defacebench.privacy`'s settings).

    Faces smaller than a fifth of the render are not searched for: the renders are framed on the
    head, so a face there is a false detection in the hair or an ear, and the small scales are most
    of the cascade's time.
    """
    import cv2

    grey = cv2.equalizeHist(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY))
    faces = _haar().detectMultiScale(
        grey, scaleFactor=1.05, minNeighbors=3, minSize=(grey.shape[0] // 5, grey.shape[0] // 5)
    )
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in faces]


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def hog_faces(rgb: np.ndarray, scale: int = 2) -> list[tuple[Box, float]]:
    """Faces dlib's HOG detector finds, with their SVM scores (larger: more face-like), best first.

    Run on the render shrunk ``scale`` times (boxes given at full size): faces in the renders are
    200-450 pixels wide, well above the detector's 80-pixel window after halving, and the
    detector's time grows with the pixels.
    """
    import cv2

    small = cv2.resize(
        np.ascontiguousarray(rgb), (rgb.shape[1] // scale, rgb.shape[0] // scale), interpolation=cv2.INTER_AREA
    )
    boxes, scores, _ = _hog().run(small, 0, 0.0)
    found = [
        ((b.left() * scale, b.top() * scale, b.right() * scale, b.bottom() * scale), float(s))
        for b, s in zip(boxes, scores)
    ]
    return sorted(found, key=lambda item: -item[1])
