"""Face embeddings: dlib's ResNet face descriptor (128-d), from the face-recognition-models wheel.

The model (``dlib_face_recognition_resnet_model_v1.dat``, 99.38 % on LFW) maps an aligned face to a
128-d vector whose Euclidean distance is small for the same person (King 2009, J Mach Learn Res
10:1755; dlib's model card). Faces are aligned on the 5-point landmark model
(``shape_predictor_5_face_landmarks.dat``). The model files are read from the installed
``face_recognition_models`` package without importing it: its ``__init__`` needs ``pkg_resources``,
which setuptools 81 removed. Nothing is downloaded. The ``face_recognition`` package, a wrapper of
these same dlib calls, is not needed.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from .detect import Box

DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"


def model_file(name: str) -> Path:
    """A model file of the installed face-recognition-models wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found in the installed face-recognition-models ({path})")
    return path


@lru_cache(maxsize=1)
def _models():
    import dlib

    return dlib.shape_predictor(str(model_file(LANDMARK_MODEL))), dlib.face_recognition_model_v1(
        str(model_file(DESCRIPTOR_MODEL))
    )


def face_descriptor(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The 128-d descriptor of the face in ``box`` (left, top, right, bottom) of an RGB uint8 render."""
    import dlib

    landmarks, descriptor = _models()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    shape = landmarks(rgb, dlib.rectangle(*(int(v) for v in box)))
    return np.asarray(descriptor.compute_face_descriptor(rgb, shape), np.float64)
