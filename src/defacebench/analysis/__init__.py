"""Outcome measures ("arms") of the study.

Each arm is a function ``arm(images, **settings) -> dict`` where ``images`` maps
a modality key (see :data:`defacebench.cohorts.MODALITIES`) to a
``nibabel.Nifti1Image``. It returns at least ``value`` (and ``backend``), other
keys become the record's ``details``; it raises
:class:`defacebench.records.AnalysisFailure` for study failures.
"""
