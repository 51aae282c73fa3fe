"""The image-quality arm's records and cohort tables (defacebench.quality.arm)."""

import json

import numpy as np
import pandas as pd
import pytest

from defacebench.quality import arm


def _record(subject, variant, iqms, status="ok", stage="", message=""):
    return {
        "cohort": "c",
        "subject": subject,
        "variant": variant,
        "outcome": "IQM",
        "status": status,
        "failed_stage": stage,
        "message": message,
        "backend": "defacebench-iqms",
        "brain_mask_source": "x",
        "runtime_s": 1.0,
        "iqms": iqms if status == "ok" else {},
        "undefined": {},
    }


def _write(tmp_path, records):
    paths = []
    for r in records:
        path = tmp_path / f"sub-{r['subject']}_variant-{r['variant']}.json"
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, np.nan])
    expected = multipletests(p[:-1], method="holm")[1]
    got = arm.holm(p)
    assert np.allclose(got[:-1], expected) and np.isnan(got[-1])


def test_agreement_per_method_over_subjects_measured_on_both(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        s = f"{i:03d}"
        base = {"snr_wm": 10 + rng.normal(), "cjv": 0.5 + 0.05 * rng.normal(), "efc": 0.6 + 0.01 * rng.normal()}
        records.append(_record(s, "none", base))
        # 'shifted' lowers efc by a fixed 0.05 on every subject (defacing removes the face's structure)
        records.append(_record(s, "shifted", {**base, "efc": base["efc"] - 0.05}))
        records.append(
            _record(s, "same", dict(base))
            if s != "003"
            else _record(s, "same", {}, status="failed", stage="deface", message="crash")
        )
    table = arm.load_iqm_records(_write(tmp_path, records))
    agreement = arm.iqm_agreement(table, ["shifted", "same"], n_boot=200).set_index(["method", "iqm"])
    # full minus defaced, as Provins et al. (2025)
    assert agreement.loc[("shifted", "efc"), "bias"] == pytest.approx(0.05)
    assert agreement.loc[("shifted", "snr_wm"), "bias"] == pytest.approx(0.0)
    assert agreement.loc[("shifted", "efc"), "n"] == 12
    assert agreement.loc[("same", "efc"), "n"] == 11  # the failed subject leaves that method's pairs only
    assert agreement.loc[("shifted", "efc"), "mean_full"] - agreement.loc[
        ("shifted", "efc"), "mean_defaced"
    ] == pytest.approx(0.05)
    # Holm never lowers a p value and keeps the order
    shifted = agreement.loc["shifted"]
    assert (shifted["p_holm"].dropna() >= shifted["p"].dropna() - 1e-15).all()


def test_cohort_tables_name_failures_and_test_jointly(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for i in range(15):
        s = f"{i:03d}"
        base = {f"iqm{k}": float(rng.normal()) for k in range(4)}
        records.append(_record(s, "none", base))
        records.append(
            _record(s, "m", {k: v + (0.8 if k == "iqm0" else 0.0) + 0.05 * rng.normal() for k, v in base.items()})
        )
    records.append(_record("099", "none", {}, status="failed", stage="input", message="sub-099_T1w.nii.gz: empty"))
    paths = arm.write_iqm_tables(_write(tmp_path, records), tmp_path / "out", "c", ["m"])
    multivariate = pd.read_csv(paths["multivariate"], sep="\t")
    pooled = multivariate[multivariate.group == "pooled"].iloc[0]
    assert pooled["n"] == 15 and pooled["iqms_used"] == 4
    assert pooled["p"] < 1e-3  # a shift of 0.8 SD in one IQM, against noise of 0.05
    md = paths["agreement_md"].read_text()
    assert "sub-099 variant none: input: sub-099_T1w.nii.gz: empty" in md
    assert "full minus defaced" in md
    iqms = pd.read_csv(paths["iqms"], sep="\t", dtype={"subject": str})
    assert len(iqms) == 31 and set(iqms.status) == {"ok", "failed"}


def test_a_failed_defacing_is_a_recorded_failure(tmp_path):
    deface = tmp_path / "deface.json"
    deface.write_text(json.dumps({"status": "failed", "failed_stage": "deface", "message": "tool crashed"}))
    record = arm.image_quality_record(
        tmp_path / "missing_T1w.nii.gz", cohort="c", subject="001", variant="m", deface_record_path=deface
    )
    assert record["status"] == "failed" and record["failed_stage"] == "deface"
    assert "tool crashed" in record["message"] and record["iqms"] == {}


def test_a_missing_t1w_is_a_recorded_failure(tmp_path):
    record = arm.image_quality_record(tmp_path / "sub-001_T1w.nii.gz", cohort="c", subject="001", variant="none")
    assert (record["status"], record["failed_stage"], record["message"]) == (
        "failed",
        "input",
        "no T1w image for this subject",
    )


@pytest.mark.parametrize("without_nbv", [False, True])
def test_workflow_measures_every_t1w_variant_when_asked(tmp_path, without_nbv):
    """The NBV jobs of a cohort that measures NBV also write its IQM records; every other cohort's T1w
    variants get one image_quality job each when quality.cohorts_without_nbv is on; one table job per cohort."""
    from workflow_runs import job_counts, snakemake

    config = tmp_path / "quality.yaml"
    config.write_text(f"quality:\n  iqms: true\n  cohorts_without_nbv: {str(without_nbv).lower()}\n")
    result = snakemake("-n", "--configfile", str(config), "--config", f"results={tmp_path / 'results'}", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = job_counts(output)
    # the default study: healthy and ms (8 subjects each) measure NBV, glioma (8) does not; full + 3 methods
    assert counts["analyse_nbv_iqms"] == 16 and counts["analyse"] == 8 + 8, output
    assert counts.get("image_quality", 0) == (8 * 4 if without_nbv else 0), output
    assert counts["cohort_quality_tables"] == (3 if without_nbv else 2), output


def _nbv_twice_in_this_process():
    """:func:`nbv_run`'s work, in a process whose first ITK use this is (one thread, so repeatable)."""
    import os

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    import nibabel as nib
    from nibabel.processing import resample_to_output

    from defacebench.analysis import nbv
    from defacebench.templates import pydeface_head

    head = resample_to_output(nib.load(str(pydeface_head())), voxel_sizes=2.5, order=1)
    img = nib.Nifti1Image(np.asarray(head.dataobj, np.float32), head.affine)
    plain = nbv.normalised_brain_volume({"T1w": img}, threads=1)
    with nbv.keep_intermediates() as kept:
        keeping = nbv.normalised_brain_volume({"T1w": img}, threads=1)
    kept = dict(kept)
    # the IQMs' inputs from the arm's steps and computed alone, here too: N4's result depends on ITK's threads
    from defacebench.quality import masks

    reused = masks.reusable_from_nbv(kept, img)
    taken = masks.iqm_inputs(img, None, threads=1, reused=reused)
    alone = masks.iqm_inputs(img, np.asarray(keeping["segmentation"].dataobj) > 0, threads=1)
    return img, plain, keeping, kept, {"reused": set(reused), "taken": taken, "alone": alone}


@pytest.fixture(scope="module")
def nbv_run():
    """The NBV arm on pydeface's template head at 2.5 mm (1 thread), with what it kept on the way.

    Run in a fresh process: ITK fixes its thread count at its first use in a process, so in the
    pytest process (after two-threaded ITK work of other tests) a seeded registration would not
    repeat and the two runs could differ for that reason alone (measured: NBV 1538.39 vs 1538.45 ml).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_nbv_twice_in_this_process).result()


def test_keeping_the_nbv_arms_intermediates_changes_nothing_it_returns(nbv_run):
    _, plain, keeping, kept, _ = nbv_run
    assert keeping["value"] == plain["value"] and keeping["vscaling"] == plain["vscaling"]
    assert np.array_equal(np.asarray(keeping["segmentation"].dataobj), np.asarray(plain["segmentation"].dataobj))
    assert {"canonical", "brain_mask", "inu_field", "brain_to_mni", "partial_volumes"} <= set(kept)


def test_iqms_from_the_nbv_arms_steps_equal_the_iqms_computed_alone(nbv_run):
    """The brain mask, N4 field, partial volumes and brain affine the NBV arm made are the IQMs' own steps."""
    from defacebench.quality import iqms, masks

    img, _, _, kept, inputs = nbv_run
    taken, alone = inputs["taken"], inputs["alone"]
    assert {"brain", "inu_field", "partial_volumes", "subject_to_mni"} <= inputs["reused"]
    assert set(taken.provenance["reused"]) == {"inu_field", "tissues", "template_priors"}
    for name in ("corrected", "brain", "head", "rotation", "hat", "artifact", "partial_volumes", "inu_field"):
        assert np.array_equal(getattr(taken, name), getattr(alone, name)), name
    assert np.array_equal(taken.template_priors, alone.template_priors)
    a, b = iqms.image_quality_metrics(taken)["iqms"], iqms.image_quality_metrics(alone)["iqms"]
    assert a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)
    # a step run with other settings is not taken
    assert "inu_field" not in masks.reusable_from_nbv({**kept, "n4": {**kept["n4"], "shrink_factor": 2}}, img)
