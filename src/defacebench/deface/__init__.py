"""Facial feature removal ("defacing") methods, each the real algorithm or a named re-implementation.

- ``quickshear``: the quickshear package (Schimke & Hale 2011) on a deepbet brain mask, orientation-safe.
- ``facemasking``: a re-implementation of Milchenko & Marcus (2013): the facial surface is blurred, not removed.
- ``mri_deface``: FreeSurfer's ``mri_deface`` when installed and configured, else a re-implementation of
  Bischoff-Grethe et al. (2007) under its own backend name (``defacebench-mri_deface-like``).
- ``pydeface``: PyDeface's template and face mask with antspyx registration, or the ``pydeface``
  command when FSL is installed.
- any other name: a command template from the options (``command: "fsl_deface {input} {output}"``).

Modules: :mod:`.common` (template face region, command runner), one module per method, :mod:`.run`
(preparation per subject, :func:`deface_image`, :func:`deface_subject`).
"""

from .run import (
    BACKENDS,
    METHODS,
    cached_preparation,
    deface_image,
    deface_subject,
    load_preparation,
    prepare_subject,
    render_full_images,
    save_preparation,
)

__all__ = [
    "BACKENDS",
    "METHODS",
    "cached_preparation",
    "deface_image",
    "deface_subject",
    "load_preparation",
    "prepare_subject",
    "render_full_images",
    "save_preparation",
]
