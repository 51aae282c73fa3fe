"""Blinded visual quality rating by real raters, and the rater-bias analysis of their ratings.

Provins et al. (2025), PLoS Biol 23:e3003149, found that defacing biases manual quality ratings
of MRIQC's visual reports (Esteban et al. 2017, PLoS ONE 12:e0184661). These modules let a user
repeat that with their own images, defacing methods and raters:

- :mod:`~defacebench.rating.visual`: the views of MRIQC's anatomical report for one image
  variant, as PNG without text or metadata;
- :mod:`~defacebench.rating.blinding`: random report identifiers, the key kept apart, and each
  rater's own random order;
- :mod:`~defacebench.rating.store`: the append-only ratings file in the published S1 layout;
- :mod:`~defacebench.rating.server`: the local rating page (Flask);
- :mod:`~defacebench.rating.analysis`: un-blinding and the mixed-model and agreement analysis of
  :mod:`defacebench.quality.ratings`, per defacing method;
- :mod:`~defacebench.rating.cli`: the ``defacebench-rate`` command.

docs/rating.md describes a rating session from start to end. Submodules are imported where used.
"""
