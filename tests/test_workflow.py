"""The workflow end to end: lint, dry run, and a tiny simulated study run to its tables."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from workflow_runs import REPO, job_counts, snakemake


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_workflow_parses_without_the_analysis_dependencies():
    """The Snakefile's own imports load with only Snakemake's dependencies installed.

    On a cluster the workflow is parsed by a submit-only environment (README, "Running on a
    cluster"); an import of the simulator or analysis at parse time would stop it there."""
    sources = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    imports = [
        line.strip()
        for path in sources
        for line in path.read_text().splitlines()
        if line.startswith(("from defacebench", "import defacebench"))
    ]
    assert imports, "the workflow no longer imports the package: update this test"
    heavy = ["numpy", "scipy", "nibabel", "pandas", "ants", "torch", "deepbet", "sklearn", "bids"]
    program = "\n".join(
        [
            "import sys",
            *(f"sys.modules[{name!r}] = None" for name in heavy),  # any import of these now fails
            *imports,
        ]
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_default_study_dry_run():
    result = snakemake("-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = job_counts(output)
    # 24 subjects; NBV on 16, WMLV on 8, GBV on 8, one job per subject and outcome for its 4 variants;
    # 3 methods x 24 subjects defaced
    # (the NBV jobs also compute the IQMs of the same images: analyse_nbv_iqms, workflow/rules/quality.smk)
    assert counts["analyse_nbv_iqms"] == 16 and counts["analyse"] == 8 + 8 and counts["deface"] == 72, output
    assert counts["prepare_defacing"] == 24 and counts["simulate_subject"] == 24, output


def test_bad_config_stops_with_key_and_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cohorts:\n  - name: x\n    source: simulated\n    kind: healthy\n    n_subjects: 0\n    seed: 1\n    outcomes: [NBV]\n"
    )
    result = snakemake("-n", "--configfile", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "n_subjects" in output and "less than the minimum of 1" in output


# A command-template method that fails on one subject: the failure must reach the failure
# table and take that subject out of every method's agreement (complete cases).
FAILING_ON_002 = (
    "sh -c 'case {input} in *sub-002*) echo simulated tool crash >&2; exit 3;; *) cp {input} {output};; esac'"
)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    results = tmp_path / "results"
    config = tmp_path / "tiny.yaml"
    config.write_text(
        (REPO / "config/test-tiny.yaml").read_text() + f'\nmethod_options:\n  flaky:\n    command: "{FAILING_ON_002}"\n'
    )
    result = snakemake(
        "--cores",
        "2",
        "--configfile",
        str(config),
        "--config",
        f"results={results}",
        "methods=[quickshear,flaky]",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    tables = results / "tables"
    records = pd.read_csv(tables / "healthy_records.tsv", sep="\t", dtype={"subject": str})
    assert len(records) == 3 * 3  # 3 subjects x (none, quickshear, flaky)
    flaky_002 = records[(records.variant == "flaky") & (records.subject == "002")]
    assert flaky_002.status.tolist() == ["failed"] and flaky_002.failed_stage.tolist() == ["deface"]
    ok = records[records.status == "ok"]
    assert ok.value.between(800, 2200).all()
    assert ok.truth.notna().all()

    failures = pd.read_csv(tables / "healthy_failures.tsv", sep="\t").set_index("method")
    assert failures.loc["flaky", "failed_defaced"] == 1 and failures.loc["quickshear", "failed_defaced"] == 0
    agreement = pd.read_csv(tables / "healthy_agreement.tsv", sep="\t").set_index("method")
    assert (agreement["n_complete"] == 2).all()  # sub-002 dropped from both methods

    summary = (tables / "summary.txt").read_text()
    assert "ICC(A,1)" in summary and result.stdout.count("ICC(A,1)") >= 1
    deface = json.loads((results / "records/healthy/deface/sub-001_method-quickshear.json").read_text())
    assert deface["status"] == "ok" and deface["backend"]
    # the full image's analysis took the defacing preparation's brain mask; 'flaky' copies sub-001's
    # image unchanged and its analysis ran deepbet afresh: the same mask, hence the same NBV
    [full] = json.loads((results / "records/healthy/NBV/sub-001_variant-none.json").read_text())
    [copied] = json.loads((results / "records/healthy/NBV/sub-001_variant-flaky.json").read_text())
    assert full["details"]["brain_mask_reused_from"].endswith("preparation/sub-001/brain_mask.nii.gz")
    assert "brain_mask_reused_from" not in copied["details"]
    assert full["value"] == copied["value"]

    # each analysis keeps its label map; the overlap table compares defaced with full, per subject
    segmentations = results / "segmentations/healthy/NBV"
    name = full["details"]["segmentation"]
    assert name == "sub-001_variant-none_desc-tissue_dseg.nii.gz"
    label_map = nib.load(segmentations / "sub-001_variant-none" / name)
    t1w = nib.load(results / "cohorts/healthy/sub-001/anat/sub-001_T1w.nii.gz")
    assert label_map.shape == t1w.shape and np.allclose(label_map.affine, t1w.affine)  # the input's own grid
    assert set(np.unique(np.asarray(label_map.dataobj))) == {0, 1, 2, 3}
    # failed: no label map (Snakemake keeps its .snakemake_timestamp in a folder output)
    assert not list((segmentations / "sub-002_variant-flaky").glob("*.nii*"))
    assert 0.8 < full["details"]["dice_vs_truth"] <= 1.0
    overlap = pd.read_csv(tables / "healthy_overlap.tsv", sep="\t", dtype={"subject": str})
    assert sorted(set(overlap.subject)) == ["001", "003"]  # the agreement table's complete cases
    same = overlap[(overlap.method == "flaky") & (overlap.subject == "001")]
    assert same.dice_vs_full.tolist() == [1.0]  # an unchanged image, the same voxels
    assert overlap.dice_vs_full.between(0.5, 1.0).all()
    assert (overlap.dice_full_vs_truth.round(6) == round(full["details"]["dice_vs_truth"], 6)).any()
    assert "Dice" in (tables / "healthy_overlap.md").read_text()
    assert "Dice vs full mean 1.0000 (min 1.0000)" in summary  # flaky: the full image, copied
