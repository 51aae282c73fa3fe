"""Config validation and the study plan (no images processed)."""

from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from defacebench.study import ConfigError, plan_cohorts

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def default_config():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("path", sorted((REPO / "config").rglob("*.yaml")))
def test_shipped_configs_validate(path):
    config = default_config()
    config.update(yaml.safe_load(path.read_text()))  # as snakemake --configfile merges top-level keys
    validate(config, SCHEMA)


@pytest.mark.parametrize(
    "mutate, key, problem",
    [
        (lambda c: c["cohorts"][0].update(n_subjects=0), "n_subjects", "less than the minimum"),
        (lambda c: c["cohorts"][1].update(outcomes=["BRAINAGE"]), "outcomes", "is not one of"),
        (lambda c: c["cohorts"][0].pop("seed"), "seed", "is a required property"),
        (lambda c: c.update(methods=[]), "methods", "should be non-empty"),
        (lambda c: c["deface"].update(brain_extraction="bet2"), "brain_extraction", "is not one of"),
        (lambda c: c.update(colour="blue"), "colour", "Additional properties are not allowed"),
    ],
)
def test_bad_config_names_key_and_problem(mutate, key, problem):
    config = default_config()
    mutate(config)
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    message = str(err.value)
    assert key in message and problem in message


def test_unknown_method_without_command_is_rejected():
    config = default_config()
    config["methods"] = ["quickshear", "fsl_deface"]
    with pytest.raises(ConfigError, match=r"methods\[1\].*fsl_deface.*command"):
        plan_cohorts(config, REPO)
    config["method_options"] = {"fsl_deface": {"command": "cp {input} {output}"}}
    assert set(plan_cohorts(config, REPO)) == {"healthy", "ms", "glioma"}


def test_command_executable_is_checked_at_plan_time(tmp_path):
    """A missing executable stops the plan naming the key, instead of failing every defacing job later."""
    config = default_config()
    config["methods"] = ["quickshear", "fsl_deface"]
    config["method_options"] = {"fsl_deface": {"command": "FSLOUTPUTTYPE=NIFTI_GZ fsl_deface_absent {input} {output}"}}
    with pytest.raises(
        ConfigError, match=r"method_options.fsl_deface.command: executable 'fsl_deface_absent' not found"
    ):
        plan_cohorts(config, REPO)
    config["method_options"]["fsl_deface"]["check_executable"] = False  # it exists only on the compute nodes
    assert "healthy" in plan_cohorts(config, REPO)
    tool = tmp_path / "deface.sh"
    tool.write_text("#!/bin/sh\ncp $1 $2\n")
    config["method_options"] = {"fsl_deface": {"command": f"{tool} {{input}} {{output}}"}}
    with pytest.raises(ConfigError, match="is not executable"):
        plan_cohorts(config, REPO)
    tool.chmod(0o755)
    assert "healthy" in plan_cohorts(config, REPO)
    config["analysis"] = {"WMLV": {"backend": "command", "command": "lst_absent {flair} {output}"}}
    with pytest.raises(ConfigError, match=r"analysis.WMLV.command: executable 'lst_absent'"):
        plan_cohorts(config, REPO)


def test_read_only_results_folder_is_refused(tmp_path, monkeypatch):
    """A results folder the workflow cannot write stops the plan with the folder named (checked with
    os.access, which a read-only mount fails even for root)."""
    import os

    config = default_config()
    config["results"] = str(tmp_path / "locked" / "results")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    with pytest.raises(ConfigError, match=r"results: .*locked/results is not writable \(its nearest existing parent"):
        plan_cohorts(config, REPO)
    (tmp_path / "locked").mkdir()
    assert "healthy" in plan_cohorts(config, REPO)


def test_outcome_needing_missing_modality_is_rejected():
    config = default_config()
    config["cohorts"][0]["outcomes"] = ["GBV"]  # a healthy cohort has no FLAIR, T2w or ceT1w
    with pytest.raises(ConfigError, match=r"cohorts\[0\] \(healthy\).outcomes: GBV needs"):
        plan_cohorts(config, REPO)


def test_simulated_plan_names_bids_paths():
    cohorts = plan_cohorts(default_config(), REPO)
    glioma = cohorts["glioma"]
    assert glioma.subjects == [f"{i:03d}" for i in range(1, 9)]
    paths = glioma.images["002"]
    assert set(paths) == {"T1w", "ceT1w", "T2w", "FLAIR"}
    assert paths["ceT1w"].as_posix().endswith("results/cohorts/glioma/sub-002/anat/sub-002_ce-gadolinium_T1w.nii.gz")
    assert glioma.modalities() == ["T1w", "ceT1w", "T2w", "FLAIR"]


@pytest.mark.realdata
def test_bids_cohort_discovered_with_filters(real_bids, tmp_path):
    config = default_config()
    config["results"] = str(tmp_path / "results")
    config["cohorts"] = [
        {
            "name": "real",
            "source": "bids",
            "bids_root": str(real_bids),
            "filters": {"subject": ["IXI012", "gbm7294", "ms07"]},
            "outcomes": ["NBV", "WMLV"],
        }
    ]
    cohort = plan_cohorts(config, REPO)["real"]
    assert cohort.subjects == ["IXI012", "gbm7294", "ms07"]
    assert set(cohort.images["ms07"]) == {"T1w", "FLAIR"}
    assert set(cohort.images["IXI012"]) == {"T1w"}  # no FLAIR: its WMLV will be a recorded failure
    # ce-gadolinium T1w is not mistaken for the T1w
    assert cohort.images["gbm7294"]["T1w"].name == "sub-gbm7294_T1w.nii.gz"


@pytest.mark.realdata
def test_results_inside_dataset_is_refused(real_bids):
    config = default_config()
    config["results"] = str(real_bids / "derivatives" / "defacebench")
    config["cohorts"] = [{"name": "real", "source": "bids", "bids_root": str(real_bids), "outcomes": ["NBV"]}]
    with pytest.raises(ConfigError, match="inputs are read-only"):
        plan_cohorts(config, REPO)


@pytest.mark.parametrize(
    "mutate, line",
    [
        (
            lambda c: c["cohorts"][0].update(method="x"),
            "cohorts[0].method: unknown key; allowed: bids_root, filters, kind, modalities, n_subjects, name, outcomes, reference, seed, select, source",
        ),
        (lambda c: c["cohorts"][0].update(n_subjects=0), "cohorts[0].n_subjects: 0 is less than the minimum of 1"),
        (
            lambda c: c["deface"].update(brain_extraction="bet2"),
            "deface.brain_extraction: 'bet2' is not allowed; allowed: deepbet, robex",
        ),
        (lambda c: c["cohorts"][0].pop("seed"), "cohorts[0]: missing required key seed"),
        (lambda c: c.update(methods="quickshear"), "methods: 'quickshear' is not of type array"),
    ],
)
def test_schema_errors_one_line_each(mutate, line):
    """Key path, problem and allowed values on one line; no dump of the schema or the config."""
    from defacebench.study import config_schema_errors

    config = default_config()
    assert config_schema_errors(config, SCHEMA) == []
    mutate(config)
    assert config_schema_errors(config, SCHEMA) == [line]


def test_bids_modalities_leaving_out_an_outcome_s_image_are_refused(real_bids):
    config = default_config()
    config["cohorts"] = [
        {
            "name": "real",
            "source": "bids",
            "bids_root": str(real_bids),
            "modalities": ["T2w"],
            "outcomes": ["NBV"],
            "filters": {"subject": ["IXI012"]},
        }
    ]
    with pytest.raises(ConfigError, match=r"cohorts\[0\] \(real\).modalities: NBV needs T1w"):
        plan_cohorts(config, REPO)


def _write_bids(root: Path, files: list[str]) -> Path:
    """A BIDS tree whose images are the named files (empty: only discovery is tested here)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def _bids_config(tmp_path, root, **entry):
    config = default_config()
    config["results"] = str(tmp_path / "results")
    config["cohorts"] = [{"name": "mine", "source": "bids", "bids_root": str(root), "outcomes": ["NBV"], **entry}]
    return config


MULTI_RUN = [
    "sub-01/anat/sub-01_run-1_T1w.nii.gz",
    "sub-01/anat/sub-01_run-2_T1w.nii.gz",
    "sub-02/anat/sub-02_T1w.nii.gz",
    "sub-03/anat/sub-03_T1w.nii.gz",
]


def test_multi_run_subject_choices_keep_the_other_subjects(tmp_path):
    """Two T1w runs of one subject: the message names both remedies; neither drops subjects without a run."""
    root = _write_bids(tmp_path / "bids", MULTI_RUN)
    with pytest.raises(ConfigError) as err:
        plan_cohorts(_bids_config(tmp_path, root), REPO)
    message = str(err.value)
    assert "sub-01 has 2 T1w images (sub-01_run-1_T1w.nii.gz, sub-01_run-2_T1w.nii.gz)" in message
    assert "select: {run: last}" in message and "filters: {run: [1, null]}" in message
    for entry, run in (({"select": {"run": "last"}}, "run-2"), ({"select": {"run": "first"}}, "run-1")):
        images = plan_cohorts(_bids_config(tmp_path, root, **entry), REPO)["mine"].images
        assert sorted(images) == ["01", "02", "03"] and run in images["01"]["T1w"].name
    images = plan_cohorts(_bids_config(tmp_path, root, filters={"run": [1, None]}), REPO)["mine"].images
    assert sorted(images) == ["01", "02", "03"] and "run-1" in images["01"]["T1w"].name
    # the trap the message warns of: a run filter alone leaves the subjects without a run with nothing
    cohort = plan_cohorts(_bids_config(tmp_path, root, filters={"run": 1}), REPO)["mine"]
    assert cohort.images["02"] == {} and any("sub-02 has no T1w image" in w for w in cohort.warnings)


def test_every_subject_with_nothing_to_analyse_is_warned_about(tmp_path):
    root = _write_bids(
        tmp_path / "bids", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T2w.nii.gz", "sub-03/notes.txt"]
    )
    (root / "sub-04").mkdir()
    cohort = plan_cohorts(_bids_config(tmp_path, root), REPO)["mine"]
    # kept in the plan (their records fail at input with the reason), and said at plan time
    assert cohort.subjects == ["01", "02", "03", "04"]
    assert [w.split(": ", 1)[1].split(" (")[0] for w in cohort.warnings] == [
        "sub-02 has no T1w image that matches the filters",
        "sub-03 has no T1w image that matches the filters",
        "sub-04 has no T1w image that matches the filters",
    ]
    assert "its folder holds sub-02_T2w.nii.gz" in cohort.warnings[0]
    named = plan_cohorts(_bids_config(tmp_path, root, filters={"subject": ["01", "04", "sub-05"]}), REPO)["mine"]
    assert named.subjects == ["01", "04"]
    assert named.warnings[1] == (
        f"cohorts[0] (mine).filters.subject: sub-sub-05 is not in {root} "
        "(labels are given without 'sub-': '05'); left out"
    )


# ---------------------------------------------------------------- config files: what a user sees (issue #23)

BAD_YAML = {
    "unclosed list": ("methods: [quickshear\ncohorts: []\n", "line 2, column 8: not valid YAML: expected ',' or ']'"),
    "tab indent": (
        "cohorts:\n  - name: x\n\tsource: bids\n",
        "line 3, column 1: not valid YAML: found character '\\t'",
    ),
    "bad indent": ("results: r\n  methods: [a]\n", "line 2, column 10: not valid YAML: mapping values are not allowed"),
    "a list": ("- quickshear\n", "the top level must be keys (results, methods, cohorts, ...), not a list"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_yaml_error_names_file_and_line(case, tmp_path):
    from defacebench.study import ConfigFileError, read_config_file

    text, expected = BAD_YAML[case]
    path = tmp_path / "mystudy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_config_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}") and expected in message and "\n" not in message


def test_config_check_command_names_file_line_and_key(tmp_path):
    """python -m defacebench.study: one line per problem, fast, for the errors Snakemake reports without
    the file and line (it reads --configfile before the workflow starts)."""
    import subprocess
    import sys
    import time

    def check(text):
        path = tmp_path / "mystudy.yaml"
        path.write_text(text)
        start = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "defacebench.study", str(path)], cwd=REPO, capture_output=True, text=True
        )
        assert time.monotonic() - start < 5
        return run.returncode, run.stderr.strip().splitlines(), path

    code, lines, path = check(BAD_YAML["unclosed list"][0])
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}, line 2, column 8")
    code, lines, _ = check(
        "method: [quickshear]\ncohorts:\n  - {name: a, source: simulated, kind: ms, n_subjects: 0}\n"
    )
    assert code == 1 and lines == [
        "error: cohorts[0].n_subjects: 0 is less than the minimum of 1",
        "error: cohorts[0]: missing required key outcomes",
        "error: cohorts[0]: missing required key seed",
        "error: method: unknown key; allowed: "
        + ", ".join(sorted(yaml.safe_load(Path(SCHEMA).read_text())["properties"])),
    ]
    code, lines, _ = check(
        "cohorts:\n  - {name: a, source: simulated, kind: healthy, n_subjects: 1, seed: 1, outcomes: [WMLV]}\n"
    )
    assert code == 1 and lines == [
        "error: cohorts[0] (a).outcomes: WMLV needs FLAIR, which a simulated 'healthy' cohort does not have"
    ]
    code, lines, _ = check((REPO / "config/studies/desitter2020.yaml").read_text())
    assert code == 0 and lines == []


def _dry_run(*args, cwd=REPO):
    """A Snakemake dry run and how long it took to fail (or plan)."""
    import time

    from workflow_runs import snakemake

    start = time.monotonic()
    run = snakemake("-n", *args, cwd=cwd, timeout=120)
    return run, time.monotonic() - start


def test_snakemake_config_errors_are_one_readable_message_each(tmp_path):
    """What `snakemake -n` prints for each kind of bad config: one message, no traceback, no schema dump,
    well under 5 s (about 2 s measured). The workflow names the file and line of a YAML error in its default
    config; a --configfile Snakemake loads itself, before the workflow starts, so its message names neither
    (docs/failures.md: python -m defacebench.study names both)."""
    schema_error = tmp_path / "schema.yaml"
    schema_error.write_text(
        "method: [quickshear]\ncohorts:\n  - {name: a, source: simulated, kind: ms, n_subjects: 1, seed: 1, outcomes: [NBV], modalitys: [T1w]}\n"
    )
    run, seconds = _dry_run("--configfile", str(schema_error))
    out = run.stdout + run.stderr
    assert run.returncode != 0 and seconds < 8, (seconds, out)
    assert "Invalid study configuration:\n  cohorts[0].modalitys: unknown key; allowed: " in out
    assert "\n  method: unknown key; allowed: " in out
    assert "$schema" not in out and "properties" not in out and "Traceback" not in out

    # a YAML error in the workflow's own config/config.yaml: file and line
    workdir = tmp_path / "wd"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text("results: results\nmethods: [quickshear\n")
    run, seconds = _dry_run("--snakefile", str(REPO / "Snakefile"), cwd=workdir)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and seconds < 8, (seconds, out)
    assert "config/config.yaml, line 3, column 1: not valid YAML" in out and "Traceback" not in out

    # a YAML error in a --configfile: Snakemake's own one-line message, before any workflow code runs
    syntax_error = tmp_path / "syntax.yaml"
    syntax_error.write_text(BAD_YAML["unclosed list"][0])
    run, seconds = _dry_run("--configfile", str(syntax_error))
    out = run.stdout + run.stderr
    assert run.returncode != 0 and seconds < 8, (seconds, out)
    assert "not valid JSON or YAML" in out and "Traceback" not in out


def test_outcome_whose_image_no_subject_has_is_refused(tmp_path):
    """GBV on a BIDS cohort without any FLAIR: refused at plan time, as for a simulated cohort."""
    root = _write_bids(
        tmp_path / "bids",
        [f"sub-01/anat/sub-01_{tail}" for tail in ("T1w.nii.gz", "ce-gadolinium_T1w.nii.gz", "T2w.nii.gz")],
    )
    with pytest.raises(ConfigError, match=r"cohorts\[0\] \(mine\).outcomes: GBV needs FLAIR, and no subject in"):
        plan_cohorts(_bids_config(tmp_path, root, outcomes=["GBV"]), REPO)
    with pytest.raises(ConfigError, match=r"WMLV needs FLAIR"):
        plan_cohorts(_bids_config(tmp_path, root, outcomes=["WMLV"]), REPO)
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz").write_bytes(b"")
    cohort = plan_cohorts(_bids_config(tmp_path, root, outcomes=["GBV"]), REPO)["mine"]
    assert set(cohort.images["01"]) == {"T1w", "ceT1w", "T2w"}  # its GBV: a failed record for the missing FLAIR
