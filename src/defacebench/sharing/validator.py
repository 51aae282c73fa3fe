"""The official BIDS validator (npm package ``bids-validator``, run with node): finding it, running it, its findings.

The share step runs without node: the validator is looked for, run when found
(``share.validate: auto``), and its result (or why it did not run) is written
to the share report. ``share.validate: true`` makes an absent validator an
error; ``false`` never runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: An explicit validator executable (takes precedence over every other place).
VALIDATOR_ENV = "DEFACEBENCH_BIDS_VALIDATOR"

#: The version .ci/run installs and docs/sharing.md names (the 1.x line reads ``--json``).
VALIDATOR_VERSION = "1.15.0"

#: Where .ci/run installs it (``npm install --prefix``): outside the repository's tracked files,
#: and kept between runs on one machine, so a second CI run does not download it again.
VALIDATOR_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "defacebench" / "bids-validator"

_REPO = Path(__file__).resolve().parents[3]


class ValidatorUnavailable(RuntimeError):
    """``share.validate: true`` but no validator (or no node) to run."""


@dataclass
class Issue:
    """One kind of finding: the validator's key and code, its reason, and the files it concerns."""

    severity: str
    key: str
    code: int | None
    reason: str
    files: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    """What the validator said about a dataset, or why it did not run (``ran`` False, ``reason``)."""

    ran: bool
    reason: str = ""
    validator: str = ""
    version: str = ""
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.ran and not self.errors

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "passed": self.passed,
            "error_count": len(self.errors),
            "warning_count": len(self.warnings),
        }

    def summary(self) -> str:
        if not self.ran:
            return f"BIDS validator not run: {self.reason}"
        head = f"BIDS validator {self.version}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        lines = [head] + [f"  ERROR {i.key} ({i.code}): {i.reason} [{', '.join(i.files[:5])}]" for i in self.errors]
        return "\n".join(lines)


def find_validator() -> tuple[Path | None, str]:
    """The validator executable and where it was found, or ``(None, why not)``.

    Looked for in ``$DEFACEBENCH_BIDS_VALIDATOR``, on ``PATH``, in
    :data:`VALIDATOR_HOME` and in the repository's ``node_modules``. The npm
    package's executable is a node script, so node must be on ``PATH`` too.
    """
    candidates = []
    if os.environ.get(VALIDATOR_ENV):
        candidates.append((Path(os.environ[VALIDATOR_ENV]), f"${VALIDATOR_ENV}"))
    on_path = shutil.which("bids-validator")
    if on_path:
        candidates.append((Path(on_path), "PATH"))
    candidates += [
        (VALIDATOR_HOME / "node_modules" / ".bin" / "bids-validator", str(VALIDATOR_HOME)),
        (_REPO / "node_modules" / ".bin" / "bids-validator", "the repository's node_modules"),
    ]
    found = next(((path, where) for path, where in candidates if path.is_file() and os.access(path, os.X_OK)), None)
    if found is None:
        return None, (
            f"bids-validator not found (${VALIDATOR_ENV}, PATH, {VALIDATOR_HOME}); install it with "
            f"`npm install --prefix {VALIDATOR_HOME} bids-validator@{VALIDATOR_VERSION}`"
        )
    if shutil.which("node") is None:
        return None, f"bids-validator found ({found[0]}) but node is not on PATH"
    return found[0], found[1]


def validator_version(executable: Path) -> str:
    """The npm package's version, read from its package.json (no node start-up needed)."""
    package = Path(executable).resolve().parents[1] / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def _issues(raw: list, severity: str) -> list[Issue]:
    out = []
    for item in raw:
        files = [f for f in item.get("files") or [] if f]
        paths = sorted({(f.get("file") or {}).get("relativePath", "") for f in files} - {""})
        evidence = [str(f["evidence"]) for f in files if f.get("evidence")][:5]
        out.append(
            Issue(severity, str(item.get("key", "")), item.get("code"), str(item.get("reason", "")), paths, evidence)
        )
    return out


def run_validator(
    dataset: str | Path, executable: str | Path | None = None, timeout_s: float = 600
) -> ValidationResult:
    """Run the BIDS validator on ``dataset`` (``--json``) and return its errors and warnings.

    ``executable`` defaults to :func:`find_validator`'s; a missing one raises
    :class:`ValidatorUnavailable`. Output that is not the validator's JSON
    (a crash) raises ``RuntimeError`` with the end of its error stream.
    """
    if executable is None:
        executable, why = find_validator()
        if executable is None:
            raise ValidatorUnavailable(why)
    try:
        proc = subprocess.run(
            [str(executable), "--json", str(dataset)], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"bids-validator did not finish within {timeout_s:.0f} s on {dataset}") from None
    try:
        report = json.loads(proc.stdout)
        issues = report["issues"]
    except (ValueError, KeyError, TypeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(
            f"bids-validator exited with {proc.returncode} without a JSON report: " + " | ".join(tail)
        ) from None
    return ValidationResult(
        True,
        validator=str(executable),
        version=validator_version(Path(executable)),
        errors=_issues(issues.get("errors", []), "error"),
        warnings=_issues(issues.get("warnings", []), "warning"),
    )


def validate_if_wanted(dataset: str | Path, mode) -> ValidationResult:
    """Run the validator as ``share.validate`` asks: ``auto`` (when found), ``True`` (required) or ``False``."""
    if mode is False:
        return ValidationResult(False, reason="share.validate is false")
    executable, where = find_validator()
    if executable is None:
        if mode is True:
            raise ValidatorUnavailable(f"share.validate is true but {where}")
        return ValidationResult(False, reason=where)
    return run_validator(dataset, executable)
