"""Analysis records and the line between a study failure and a bug.

Every analysis of every image writes one record (:class:`Record`). An analysis
that fails for a reason that belongs to the study (a tool error, an
implausible result, a missing or empty input, a defacing step that failed)
raises :class:`AnalysisFailure`; :func:`run_recorded` turns it into a record
with ``status = "failed"``. Any other exception is a programming error and
propagates, so the Snakemake job fails loudly.
"""

from __future__ import annotations

import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Callable

#: Columns of a record, in table order.
RECORD_COLUMNS = (
    "cohort",
    "subject",
    "variant",
    "outcome",
    "value",
    "unit",
    "status",
    "failed_stage",
    "message",
    "runtime_s",
    "backend",
    "tool_versions",
    "truth",
    "details",
)


class AnalysisFailure(Exception):
    """A failure that is a result of the study, not a bug.

    Parameters
    ----------
    stage : str
        The processing stage that failed (``"brain_extraction"``, ``"registration"``, ...).
    reason : str
        What went wrong, in words a researcher can act on.
    """

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class Record:
    """One analysis of one image (one row of the study's long table)."""

    cohort: str
    subject: str
    variant: str
    outcome: str
    value: float | None = None
    unit: str = ""
    status: str = "ok"
    failed_stage: str = ""
    message: str = ""
    runtime_s: float = 0.0
    backend: str = ""
    tool_versions: dict = field(default_factory=dict)
    truth: float | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def package_versions(*names: str) -> dict:
    """Installed versions of the named distributions (``"not installed"`` when absent)."""
    versions = {"python": platform.python_version()}
    for name in ("defacebench",) + names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_plausible(value: float, low: float | None, high: float | None, stage: str, what: str, unit: str) -> float:
    """Raise :class:`AnalysisFailure` when ``value`` lies outside [low, high] (a configured range)."""
    if value is None or value != value:
        raise AnalysisFailure(stage, f"{what} could not be computed (NaN)")
    if low is not None and value < low:
        raise AnalysisFailure(stage, f"implausible {what}: {value:.1f} {unit} < {low} {unit}")
    if high is not None and value > high:
        raise AnalysisFailure(stage, f"implausible {what}: {value:.1f} {unit} > {high} {unit}")
    return value


def run_recorded(
    analysis: Callable[[], dict],
    *,
    cohort: str,
    subject: str,
    variant: str,
    outcome: str,
    unit: str,
    backend: str,
    tool_versions: dict,
    truth: float | None = None,
) -> Record:
    """Run ``analysis`` and return its :class:`Record`.

    ``analysis`` returns a dict with at least ``value``; other keys go to
    ``details`` (and ``backend`` there overrides the default backend name).
    An :class:`AnalysisFailure` becomes a failed record; any other exception
    propagates.
    """
    start = time.perf_counter()
    record = Record(
        cohort=cohort,
        subject=subject,
        variant=variant,
        outcome=outcome,
        unit=unit,
        backend=backend,
        tool_versions=tool_versions,
        truth=truth,
    )
    try:
        result = dict(analysis())
    except AnalysisFailure as failure:
        record.status = "failed"
        record.failed_stage = failure.stage
        record.message = failure.reason
    else:
        record.value = float(result.pop("value"))
        record.backend = result.pop("backend", backend)
        record.details = result
    record.runtime_s = round(time.perf_counter() - start, 3)
    return record


def failure_from_exception(stage: str, exc: BaseException) -> AnalysisFailure:
    """Wrap an external tool's exception as a study failure, keeping its last line."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return AnalysisFailure(stage, last)
