"""The study plan: which subjects, images, variants and outcomes a config asks for.

Pure bookkeeping shared by the Snakemake workflow (``workflow/rules/common.smk``)
and the tests: it resolves every cohort to ``{subject: {modality: path}}`` once,
checks what a JSON schema cannot (a method nobody defined, a cohort lacking an
image an outcome needs, a results folder inside a dataset), and names every output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cohorts import (
    OUTCOME_MODALITIES,
    SIMULATED_MODALITIES,
    discover_bids_images,
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
        if method not in BUILTIN_METHODS and "command" not in method_options.get(method, {}):
            raise ConfigError(
                f"methods[{i}]: unknown defacing method {method!r}; use one of {', '.join(BUILTIN_METHODS)} "
                f"or define method_options.{method}.command (a command template with {{input}} and {{output}})"
            )
    cohorts: dict[str, Cohort] = {}
    for i, entry in enumerate(config["cohorts"]):
        key = f"cohorts[{i}] ({entry['name']})"
        if entry["name"] in cohorts:
            raise ConfigError(f"{key}: cohort name {entry['name']!r} is used twice")
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
                images = discover_bids_images(root, modalities, entry.get("filters"))
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"{key}: {exc}") from exc
            if not images:
                raise ConfigError(f"{key}: no subjects found in {root} with filters {entry.get('filters')}")
            cohort = Cohort(entry["name"], "bids", list(entry["outcomes"]), root, images)
        cohorts[cohort.name] = cohort
    return cohorts


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
