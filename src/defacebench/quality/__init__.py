"""Image quality and its assessment: how defacing changes what raters and quality metrics see.

The modules reproduce Provins et al. (2025), PLoS Biol 23:e3003149, from its published data and
hold the paired-agreement statistics a per-cohort quality arm reuses:

- :mod:`~defacebench.quality.ratings`: manual quality ratings (load and validate, the
  first-rating rule, the mixed-model likelihood-ratio test, Bland-Altman and ICC per rater);
- :mod:`~defacebench.quality.lmm`: maximum-likelihood linear mixed models with crossed random
  intercepts (exact, on dense matrices);
- :mod:`~defacebench.quality.paired`: paired agreement of many variables (Bland-Altman with
  parametric and bootstrap CIs) and the multivariate paired test on principal components;
- :mod:`~defacebench.quality.published_iqms`: MRIQC's image-quality metrics as published;
- :mod:`~defacebench.quality.provins2025`: the study's tables with the published values beside ours;
- ``iqms`` and ``masks``: MRIQC's anatomical image-quality metrics computed on our images.

Submodules are imported where used (nothing here), so importing the package stays cheap.
"""
