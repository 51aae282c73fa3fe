# Input functions and study bookkeeping; rules stay thin.
import json
import os
import re
from pathlib import Path

from snakemake.logging import logger

from defacebench.study import ConfigError, plan_cohorts, set_max_image_mb
from defacebench.cohorts import OUTCOME_RECORDS, analysis_reference
from defacebench.simulate.model_version import MODEL_VERSION as ANATOMY_MODEL_VERSION

try:
    COHORTS = plan_cohorts(config, Path.cwd())
except ConfigError as exc:
    raise WorkflowError(f"Invalid study configuration: {exc}")
if workflow.is_main_process:  # once per run, not once per job
    for _warning in (w for c in COHORTS.values() for w in c.warnings):
        logger.warning(f"Study plan: {_warning}")
if "max_image_mb" in config:  # read by every job's input check (defacebench.io.max_image_bytes)
    set_max_image_mb(config["max_image_mb"])

RESULTS = config["results"]
METHODS = list(config["methods"])
VARIANTS = ["none"] + METHODS
ANALYSIS = config.get("analysis", {})
DEFACE = config.get("deface", {})
SIMULATION = config.get("simulation", {})
PRIVACY = config.get("privacy", {})  # the re-identification attack (workflow/rules/privacy.smk)
# Provins et al. (2025) from its published tables: workflow/rules/provins2025.smk
PROVINS2025 = config.get("provins2025") or {}
PROVINS2025_TABLES = f"{RESULTS}/provins2025/tables"



def rule_resources(rule_name, threads=1, mem_mb=2000, runtime=10):
    """Defaults sized from bench/ figures, overridable in the config (key resources, by rule name)."""
    own = config.get("resources", {}).get(rule_name, {})
    return {
        "threads": own.get("threads", threads),
        "mem_mb": own.get("mem_mb", mem_mb),
        "runtime": own.get("runtime", runtime),
    }


def full_image_paths(cohort, subject):
    """Modality -> path of a subject's full (not defaced) images."""
    return {m: str(p) for m, p in COHORTS[cohort].images[subject].items()}


def defaced_dir(cohort, method, subject):
    return f"{RESULTS}/defaced/{cohort}/{method}/sub-{subject}"


def variant_image_paths(cohort, subject, variant):
    """Modality -> path of one image variant (the defaced copies keep the BIDS file names)."""
    full = full_image_paths(cohort, subject)
    if variant == "none":
        return full
    anat = Path(defaced_dir(cohort, variant, subject)) / "anat"
    return {m: str(anat / Path(p).name) for m, p in full.items()}


def subject_source(wildcards):
    """What the full images of a subject depend on: the simulation job, or nothing for real data."""
    cohort = COHORTS[wildcards.cohort]
    if cohort.simulated:
        return {
            "subject_dir": f"{cohort.bids_root}/sub-{wildcards.subject}",
            "truth_dir": f"{cohort.bids_root}/derivatives/truth/sub-{wildcards.subject}",
        }
    return {}


def truth_json(cohort, subject):
    c = COHORTS[cohort]
    if not c.simulated:
        return None
    return f"{c.bids_root}/derivatives/truth/sub-{subject}/anat/sub-{subject}_truth.json"


def deface_record(cohort, method, subject):
    return f"{RESULTS}/records/{cohort}/deface/sub-{subject}_method-{method}.json"


def preparation_dir(cohort, subject):
    return f"{RESULTS}/defaced/{cohort}/preparation/sub-{subject}"


def subject_analysis_inputs(wildcards):
    """What one analysis job (a subject's outcome on every variant) reads: the full images, every defaced
    variant with its defacing record, and the defacing preparation, whose brain mask of the full T1w is
    offered to the arm on the full image."""
    inputs = dict(subject_source(wildcards))
    inputs["defaced"] = [defaced_dir(wildcards.cohort, m, wildcards.subject) for m in METHODS]
    inputs["deface_records"] = [deface_record(wildcards.cohort, m, wildcards.subject) for m in METHODS]
    if METHODS and "T1w" in full_image_paths(wildcards.cohort, wildcards.subject):
        inputs["preparation"] = preparation_dir(wildcards.cohort, wildcards.subject)
    return inputs


def analysis_record(cohort, outcome, subject, variant):
    return f"{RESULTS}/records/{cohort}/{outcome}/sub-{subject}_variant-{variant}.json"


def cohort_analysis_records(wildcards):
    c = COHORTS[wildcards.cohort]
    return [
        analysis_record(c.name, outcome, subject, variant)
        for outcome in c.outcomes
        for subject in c.subjects
        for variant in VARIANTS
    ]


def segmentation_root(cohort):
    return f"{RESULTS}/segmentations/{cohort}"


def cohort_full_images(cohort):
    """Subject -> modality -> path of a cohort's full images (the overlap figure's background)."""
    return {subject: full_image_paths(cohort, subject) for subject in COHORTS[cohort].subjects}


def cohort_segmentation_dirs(wildcards):
    c = COHORTS[wildcards.cohort]
    return [
        f"{segmentation_root(c.name)}/{outcome}/sub-{subject}_variant-{variant}"
        for outcome in c.outcomes
        for subject in c.subjects
        for variant in VARIANTS
    ]


def cohort_deface_records(wildcards):
    c = COHORTS[wildcards.cohort]
    return [deface_record(c.name, method, subject) for method in METHODS for subject in c.subjects]


def cohort_simulation_inputs(wildcards):
    c = COHORTS[wildcards.cohort]
    return {
        "subjects": [f"{c.bids_root}/sub-{s}" for s in c.subjects],
        "truths": [f"{c.bids_root}/derivatives/truth/sub-{s}" for s in c.subjects],
    }


def table_files(cohort):
    return [
        f"{RESULTS}/tables/{cohort}_{name}"
        for name in (
            "records.tsv",
            "failures.tsv",
            "failures.md",
            "agreement.tsv",
            "agreement.md",
            "defacing.tsv",
            "defacing.md",
            "agreement.png",
            "overlap.tsv",
            "overlap.md",
            "overlap.png",
            "accuracy.tsv",
            "accuracy.md",
        )
    ]


# The image-quality arm (workflow/rules/quality.smk): IQMs of every T1w variant, on with quality: {iqms: true}
QUALITY = config.get("quality", {})


def quality_cohorts():
    """Cohorts whose T1w images get IQMs, when the arm is on: every cohort with a T1w, or only those that
    measure NBV (whose NBV jobs compute them) when quality.cohorts_without_nbv is false."""
    if not QUALITY.get("iqms", False):
        return []
    everyone = QUALITY.get("cohorts_without_nbv", True)
    return [
        name
        for name, c in COHORTS.items()
        if (everyone or "NBV" in c.outcomes) and any("T1w" in images for images in c.images.values())
    ]


# A cohort that measures NBV gets its IQMs in its NBV jobs (analyse_nbv_iqms below): the NBV arm has just
# made the brain mask, N4 field, partial volumes and brain affine of the very same image, which are the
# IQMs' most expensive steps (defacebench.quality.masks.reusable_from_nbv). Other cohorts' T1w images get
# a job of their own per variant (image_quality).
IQM_NBV_COHORTS = [name for name in quality_cohorts() if "NBV" in COHORTS[name].outcomes]
IQM_OWN_COHORTS = [name for name in quality_cohorts() if name not in IQM_NBV_COHORTS]


def cohort_pattern(names):
    """A wildcard constraint matching exactly these cohort names (none: a pattern that matches nothing)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def iqm_record(cohort, subject, variant):
    return f"{RESULTS}/records/{cohort}/IQM/sub-{subject}_variant-{variant}.json"


def quality_inputs(wildcards):
    """The defacing record of a defaced variant, and the NBV arm's label map of the same image when the cohort
    measures NBV (its support is the brain mask the IQMs need: defacebench.quality.arm)."""
    inputs = dict(subject_source(wildcards))
    if wildcards.variant != "none":
        inputs["deface_record"] = deface_record(wildcards.cohort, wildcards.variant, wildcards.subject)
    elif METHODS and "T1w" in full_image_paths(wildcards.cohort, wildcards.subject):
        inputs["preparation"] = preparation_dir(wildcards.cohort, wildcards.subject)
    if "NBV" in COHORTS[wildcards.cohort].outcomes:
        inputs["nbv_segmentation"] = (
            f"{segmentation_root(wildcards.cohort)}/NBV/sub-{wildcards.subject}_variant-{wildcards.variant}"
        )
    return inputs


def cohort_iqm_records(wildcards):
    c = COHORTS[wildcards.cohort]
    return [iqm_record(c.name, subject, variant) for subject in c.subjects for variant in VARIANTS]


def quality_table_files(cohort):
    names = ("iqms.tsv", "iqm_agreement.tsv", "iqm_agreement.md", "iqm_multivariate.tsv", "iqm_multivariate.md")
    return [f"{RESULTS}/tables/{cohort}_{name}" for name in names]


def provins2025_input(key):
    """A published table named in the config's provins2025 block (read-only input)."""
    return PROVINS2025[key]


def provins2025_outputs():
    if not PROVINS2025:
        return []
    names = ["ratings_lmm.tsv", "ratings_lmm.md", "ratings_agreement.tsv", "ratings_agreement.md",
             "ratings_bland_altman.png", "iqm_agreement.tsv", "iqm_agreement.md", "iqm_multivariate.tsv",
             "iqm_multivariate.md", "claims.tsv", "claims.md"]
    return [f"{PROVINS2025_TABLES}/{name}" for name in names]


def study_outputs():
    # a study of published tables only (no cohorts) has no cohort summary
    outputs = [f"{RESULTS}/tables/summary.txt"] if COHORTS else []
    for name, c in COHORTS.items():
        outputs += table_files(name)
        if c.simulated:
            outputs.append(f"{c.bids_root}/participants.tsv")
    # the privacy tables when the config turns the attack on (privacy_common.smk: called once every file is included)
    outputs += privacy_outputs()
    for name in quality_cohorts():
        outputs += quality_table_files(name)
    # the study report (workflow/rules/report.smk) unless the config turns it off (report: false)
    return outputs + provins2025_outputs() + ([STUDY_REPORT] if config.get("report", True) else [])


# The study report (workflow/rules/report.smk): one HTML file over everything else the study writes
STUDY_REPORT = f"{RESULTS}/report.html"


def report_inputs():
    """Every other output of the study, so the report is written last and sees all of it."""
    others = study_outputs() + rating_outputs()
    return [path for path in others if path != STUDY_REPORT]


def print_summary():
    path = Path(f"{RESULTS}/tables/summary.txt")
    if COHORTS and path.exists():
        print(path.read_text())
    claims = Path(f"{PROVINS2025_TABLES}/claims.md")
    if PROVINS2025 and claims.exists():
        print(claims.read_text())


def print_report_location():
    """The run's last line: where the study report is."""
    if Path(STUDY_REPORT).exists():
        print(f"Study report: {Path(STUDY_REPORT).resolve()}  (one self-contained HTML file; docs/report.md)")
