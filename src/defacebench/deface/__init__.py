"""Facial feature removal ("defacing") methods, each the real algorithm or a named re-implementation.

- ``quickshear``: the quickshear package (Schimke & Hale 2011), made orientation-safe.
- ``facemasking``: a re-implementation of Milchenko & Marcus (2013).
- ``mri_deface``: FreeSurfer's ``mri_deface`` when installed and configured, else a
  re-implementation of Bischoff-Grethe et al. (2007) under its own backend name.
- ``pydeface``: PyDeface's template and face mask with antspyx registration, or the
  ``pydeface`` command when FSL is installed.
- any other name: a command template from the config.
"""

from .run import METHODS, deface_image, deface_subject, load_preparation, prepare_subject, save_preparation

__all__ = [
    "METHODS", "deface_image", "deface_subject", "load_preparation", "prepare_subject", "save_preparation",
]
