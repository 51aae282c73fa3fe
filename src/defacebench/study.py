"""The study plan: which subjects, images, variants and outcomes a config asks for.

Pure bookkeeping shared by the Snakemake workflow (``workflow/rules/common.smk``)
and the tests: it resolves every cohort to ``{subject: {modality: path}}`` once,
checks what a JSON schema cannot (a method nobody defined, a cohort lacking an
image an outcome needs, a results folder inside a dataset), and names every output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cohorts import (
    OUTCOME_MODALITIES,
    SIMULATED_MODALITIES,
    discover_bids_images,
    plan_reference,
    simulated_image_path,
    simulated_subjects,
)

#: Methods implemented in the package (see :mod:`defacebench.deface`).
BUILTIN_METHODS = ("quickshear", "facemasking", "mri_deface", "pydeface")


class ConfigError(ValueError):
    """A study configuration that cannot run, with the key at fault in the message."""


@dataclass
class Cohort:
    name: str
    source: str
    outcomes: list
    bids_root: Path
    images: dict = field(default_factory=dict)  # subject -> modality -> path (full images)
    kind: str | None = None
    seed: int | None = None
    warnings: list = field(default_factory=list)  # what the plan noticed but runs anyway (printed at start)
    reference: dict | None = None  # the user's reference labels (defacebench.reference.plan_reference)

    @property
    def subjects(self) -> list[str]:
        return sorted(self.images)

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"

    def modalities(self) -> list[str]:
        needed = []
        for outcome in self.outcomes:
            for m in OUTCOME_MODALITIES[outcome]:
                if m not in needed:
                    needed.append(m)
        return needed


def plan_cohorts(config: dict, workdir: str | Path = ".") -> dict[str, Cohort]:
    """Resolve every configured cohort to its subjects and full-image paths.

    Raises :class:`ConfigError` naming the config key for anything that cannot run.
    """
    workdir = Path(workdir).resolve()
    results = (workdir / config["results"]).resolve()
    method_options = config.get("method_options") or {}
    for i, method in enumerate(config["methods"]):
        options = method_options.get(method, {})
        if method not in BUILTIN_METHODS and "command" not in options:
            raise ConfigError(
                f"methods[{i}]: unknown defacing method {method!r}; use one of {', '.join(BUILTIN_METHODS)} "
                f"or define method_options.{method}.command (a command template with {{input}} and {{output}})"
            )
        if "command" in options and options.get("check_executable", True):
            problem = command_executable_problem(options["command"], workdir)
            if problem:
                raise ConfigError(
                    f"method_options.{method}.command: {problem} (set method_options.{method}.check_executable: "
                    "false if it exists only where the jobs run)"
                )
    for outcome, arm in (config.get("analysis") or {}).items():
        if (arm or {}).get("backend") == "command" and arm.get("command") and arm.get("check_executable", True):
            problem = command_executable_problem(arm["command"], workdir)
            if problem:
                raise ConfigError(f"analysis.{outcome}.command: {problem}")
    results_problem = folder_write_problem(results)
    if results_problem:
        raise ConfigError(f"results: {results_problem}")
    cohorts: dict[str, Cohort] = {}
    for i, entry in enumerate(config["cohorts"]):
        key = f"cohorts[{i}] ({entry['name']})"
        if entry["name"] in cohorts:
            raise ConfigError(f"{key}: cohort name {entry['name']!r} is used twice")
        if entry["source"] == "simulated" and "reference" in entry:
            raise ConfigError(f"{key}.reference: a simulated cohort is compared with its own truth, not a reference")
        if entry["source"] == "simulated":
            kind = entry["kind"]
            # relative to the working directory, exactly as the workflow names its outputs
            root = Path(config["results"]) / "cohorts" / entry["name"]
            for outcome in entry["outcomes"]:
                missing = [m for m in OUTCOME_MODALITIES[outcome] if m not in SIMULATED_MODALITIES[kind]]
                if missing:
                    raise ConfigError(
                        f"{key}.outcomes: {outcome} needs {', '.join(missing)}, which a simulated "
                        f"{kind!r} cohort does not have"
                    )
            images = {
                s: {m: simulated_image_path(root, s, m) for m in SIMULATED_MODALITIES[kind]}
                for s in simulated_subjects(entry["n_subjects"])
            }
            cohort = Cohort(entry["name"], "simulated", list(entry["outcomes"]), root, images, kind, entry["seed"])
        else:
            root = (workdir / entry["bids_root"]).resolve()
            if not root.is_dir():
                raise ConfigError(f"{key}.bids_root: {root} does not exist")
            if results == root or root in results.parents:
                raise ConfigError(f"results: {results} lies inside the dataset {root}; inputs are read-only")
            modalities = entry.get("modalities") or sorted(
                {m for o in entry["outcomes"] for m in OUTCOME_MODALITIES[o]}
            )
            for outcome in entry["outcomes"]:
                # as for simulated cohorts: refused here, not found by a job that finds no image
                needed = [m for m in OUTCOME_MODALITIES[outcome] if not (outcome == "WMLV" and m == "T1w")]
                missing = [m for m in needed if m not in modalities]
                if missing:
                    raise ConfigError(
                        f"{key}.modalities: {outcome} needs {', '.join(missing)}, which "
                        f"modalities {list(modalities)} leaves out"
                    )
            try:
                images = discover_bids_images(root, modalities, entry.get("filters"), entry.get("select"))
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"{key}: {exc}") from exc
            warnings = _subjects_without_images(key, root, images, modalities, entry.get("filters") or {})
            if not any(images.values()):
                raise ConfigError(
                    f"{key}: no {'/'.join(modalities)} image found in {root} with filters {entry.get('filters')}"
                    + (f" ({'; '.join(warnings)})" if warnings else "")
                )
            for outcome in entry["outcomes"]:
                # as for a simulated cohort without the modality: every analysis would fail, so say it now
                needed = ("FLAIR",) if outcome == "WMLV" else OUTCOME_MODALITIES[outcome]
                absent = [m for m in needed if not any(m in found for found in images.values())]
                if absent:
                    raise ConfigError(
                        f"{key}.outcomes: {outcome} needs {', '.join(absent)}, and no subject in {root} has "
                        f"{'that image' if len(absent) == 1 else 'those images'} with filters {entry.get('filters')}"
                    )
            reference = None
            if "reference" in entry:
                try:
                    reference, more = plan_reference(entry["reference"], root, entry["outcomes"], workdir)
                except ValueError as exc:
                    raise ConfigError(f"{key}.{exc}") from exc
                warnings += [f"{key}.{warning}" for warning in more]
            cohort = Cohort(
                entry["name"],
                "bids",
                list(entry["outcomes"]),
                root,
                images,
                kind=entry.get("kind"),
                warnings=warnings,
                reference=reference,
            )
        cohorts[cohort.name] = cohort
    return cohorts


def _subjects_without_images(key: str, root: Path, images: dict, modalities, filters: dict) -> list[str]:
    """A warning for every subject the cohort asks for that has nothing to analyse; ``images`` gains those that exist.

    The subjects asked for are those named in ``filters.subject``, or else every
    ``sub-*`` folder of the dataset. One whose folder holds no image of the
    cohort's modalities stays in the plan with no images (its records then
    fail at ``input`` with the reason) instead of vanishing; one named but
    absent from the dataset is left out. Either way the plan says so.
    """
    named = filters.get("subject")
    folders = {p.name[4:] for p in root.glob("sub-*") if p.is_dir()}
    asked = ([named] if isinstance(named, str) else list(named)) if named is not None else sorted(folders)
    wanted = "/".join(modalities)
    warnings = []
    for subject in asked:
        subject = str(subject)
        if images.get(subject):
            continue
        if subject in folders or subject in images:
            images.setdefault(subject, {})
            others = [p.name for p in sorted((root / f"sub-{subject}").rglob("*")) if p.is_file()][:3]
            found = f"its folder holds {', '.join(others)}" if others else "its folder holds no files"
            warnings.append(
                f"{key}: sub-{subject} has no {wanted} image that matches the filters ({found}); "
                "its analyses will be failed records"
            )
        else:
            hint = f" (labels are given without 'sub-': {subject[4:]!r})" if subject.startswith("sub-") else ""
            warnings.append(f"{key}.filters.subject: sub-{subject} is not in {root}{hint}; left out")
    return warnings


def command_executable_problem(command: str, workdir: str | Path = ".") -> str | None:
    """Why ``command``'s executable cannot run here (None when it can, or when a placeholder names it).

    The executable is the template's first word after any ``NAME=value``
    environment assignments; a name with a slash is a path (relative to
    ``workdir``), any other is looked up on ``PATH``, as the shell does.
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"the command template {command!r} cannot be split into words ({exc})"
    words = [w for w in words if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w)] or [""]
    executable = words[0]
    if not executable:
        return f"the command template {command!r} names no executable"
    if "{" in executable:
        return None  # the executable is itself filled in at run time
    if "/" in executable:
        path = Path(workdir) / executable
        if not path.is_file():
            return f"executable {executable} does not exist"
        if not os.access(path, os.X_OK):
            return f"{executable} is not executable (chmod +x)"
        return None
    if shutil.which(executable) is None:
        return f"executable {executable!r} not found on PATH; install it or give its full path"
    return None


def folder_write_problem(folder: str | Path) -> str | None:
    """Why the workflow could not write into ``folder`` (None when it can; a folder yet to be made counts
    by its nearest existing parent)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder, so {folder} cannot be made"
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" (its nearest existing parent {existing} is read-only)"
        return f"{folder} is not writable{where}; choose a results folder you can write to"
    return None


class ConfigFileError(ConfigError):
    """A config file that cannot be read as YAML: the message names the file, line and column."""


def read_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict, or :class:`ConfigFileError` naming the file, line and problem.

    Snakemake's own loader says only that the file "is not valid JSON or
    YAML"; this says where and what, in one line.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        line = text.splitlines()[mark.line].strip() if mark and mark.line < len(text.splitlines()) else ""
        shown = f": {line[:80]!r}" if line else ""
        raise ConfigFileError(f"{path}{where}: not valid YAML: {exc.problem}{context}{shown}") from exc
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: the top level must be keys (results, methods, cohorts, ...), not a {type(data).__name__}"
        )
    return data


def merge_config(base: dict, update: dict) -> dict:
    """``update`` merged into a copy of ``base`` as Snakemake merges config files: mappings key by key,
    everything else (lists included) replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_config_files(paths, workdir: str | Path = ".") -> tuple[list[str], list[str]]:
    """Errors and warnings of the study that ``snakemake --configfile <paths>`` would run in ``workdir``.

    The workflow's default ``config/config.yaml`` comes first, then each file,
    merged as Snakemake merges them; then the schema, then the plan. Each
    error is one line naming the file (and line) or the key.
    """
    workdir = Path(workdir)
    files = [workdir / "config" / "config.yaml", *map(Path, paths)]
    config: dict = {}
    try:
        for path in files:
            config = merge_config(config, read_config_file(path))
    except ConfigFileError as exc:
        return [str(exc)], []
    errors = config_schema_errors(config, workdir / "workflow" / "schemas" / "config.schema.yaml")
    if errors:
        return errors, []
    try:
        cohorts = plan_cohorts(config, workdir)
    except ConfigError as exc:
        return [str(exc)], []
    return [], [warning for cohort in cohorts.values() for warning in cohort.warnings]


def main(argv=None) -> int:
    """``python -m defacebench.study mystudy.yaml``: check a study config as the workflow would, before a run.

    Snakemake reads ``--configfile`` itself, before the workflow starts, and
    reports a YAML syntax error without the file or line; this names both.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m defacebench.study", description=main.__doc__.splitlines()[0])
    parser.add_argument("configfiles", nargs="*", help="study config files, in --configfile order")
    parser.add_argument("--workdir", default=".", help="the workflow folder (default: the current one)")
    args = parser.parse_args(argv)
    errors, warnings = check_config_files(args.configfiles, args.workdir)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not errors:
        print(f"{' '.join(args.configfiles) or 'config/config.yaml'}: valid")
    return 1 if errors else 0


def config_schema_errors(config: dict, schema_path: str | Path) -> list[str]:
    """Every way ``config`` breaks the JSON schema, one line each: key path, problem, allowed values.

    In place of a validator's report (the failing schema and the whole config
    dumped after the first error): ``cohorts[0].method: unknown key; allowed:
    name, source, ...``. Empty when the config is valid.
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    lines = [_schema_error_line(error) for error in validator.iter_errors(config)]
    return sorted(set(lines))


def _key_path(parts) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_error_line(error) -> str:
    """One line for one :class:`jsonschema.ValidationError` (the deepest, most specific error of a group)."""
    if error.context:  # anyOf/oneOf: the branch that came closest says the most
        from jsonschema.exceptions import best_match

        return _schema_error_line(best_match(error.context))
    path = list(error.absolute_path)
    schema, kind = error.schema, error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return "; ".join(
            f"{_key_path(path + [key])}: unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
            for key in extra
        )
    if kind == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"{_key_path(path)}: missing required key {', '.join(missing)}"
    if kind == "enum":
        return f"{_key_path(path)}: {_short(error.instance)} is not allowed; allowed: {', '.join(map(str, error.validator_value))}"
    if kind == "type":
        return f"{_key_path(path)}: {_short(error.instance)} is not of type {error.validator_value}"
    # minimum, pattern, minItems, uniqueItems, not, ...: jsonschema's own message is one short line
    return f"{_key_path(path)}: {error.message if len(error.message) < 200 else _short(error.instance) + ' is invalid (' + kind + ')'}"


def set_max_image_mb(megabytes: float) -> None:
    """Set the input size limit (``max_image_mb``) for this process and the jobs it starts.

    Read by every job's input check (:func:`defacebench.io.max_image_bytes`); kept here because the
    workflow's parse-time code may import only light modules.
    """
    import os

    os.environ["DEFACEBENCH_MAX_IMAGE_MB"] = str(float(megabytes))


if __name__ == "__main__":
    sys.exit(main())
