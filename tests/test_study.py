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
    config["method_options"] = {"fsl_deface": {"command": "fsl_deface {input} {output}"}}
    assert set(plan_cohorts(config, REPO)) == {"healthy", "ms", "glioma"}


def test_outcome_needing_missing_modality_is_rejected():
    config = default_config()
    config["cohorts"][0]["outcomes"] = ["GBV"]  # a healthy cohort has no FLAIR, T2w or ceT1w
    with pytest.raises(ConfigError, match=r"cohorts\[0\] \(healthy\).outcomes: GBV needs"):
        plan_cohorts(config, REPO)


def test_simulated_plan_names_bids_paths():
    cohorts = plan_cohorts(default_config(), REPO)
    glioma = cohorts["glioma"]
    assert glioma.subjects == ["001", "002"]
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
            "cohorts[0].method: unknown key; allowed: bids_root, filters, kind, modalities, n_subjects, name, outcomes, seed, source",
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
