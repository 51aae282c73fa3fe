"""Version of the simulator's head model, importable without the simulator's dependencies.

The workflow reads it when Snakemake parses the Snakefile, which on a cluster happens in a
submit-only environment that has Snakemake but not nibabel or numpy (README, "Running on a cluster").
"""

#: Version of the head model's contents; :func:`~defacebench.simulate.anatomy.load_anatomy` refuses
#: a model written by another version.
#: 2: the skull's cortical bone (``skull``).
#: 3: the face's landmarks and the region a face shape may deform (``face_weight``), for faces that
#: differ between subjects (:func:`~defacebench.simulate.deform.face_displacement`).
MODEL_VERSION = 3
