"""Version of the simulator's head model, importable without the simulator's dependencies.

The workflow reads it when Snakemake parses the Snakefile, which on a cluster happens in a
submit-only environment that has Snakemake but not nibabel or numpy (README, "Running on a cluster").
"""

#: Version of the head model's contents; :func:`~defacebench.simulate.anatomy.load_anatomy` refuses
#: a model written by another version.
#: 2: the skull's cortical bone (``skull``).
MODEL_VERSION = 2
