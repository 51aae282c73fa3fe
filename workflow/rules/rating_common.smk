# Input functions and paths of the blinded-rating rules (workflow/rules/rating.smk).

RATING = config.get("rating", {})
RATING_DIR = f"{RESULTS}/rating"
RATING_REPORTS = f"{RATING_DIR}/reports"
RATING_KEY = f"{RATING_DIR}/key.tsv"
RATING_ANALYSIS = [f"{RATING_DIR}/{name}" for name in ("ratings_unblinded.tsv", "ratings_lmm.tsv", "ratings_agreement.tsv")]


def rating_cohorts():
    names = RATING.get("cohorts") or list(COHORTS)
    unknown = [name for name in names if name not in COHORTS]
    if unknown:
        raise WorkflowError(f"Invalid study configuration: rating.cohorts: unknown cohort(s) {', '.join(unknown)}")
    return names


def rating_variants():
    """One entry per image variant to report: the rated modality of every subject, nondefaced and per method."""
    modality = RATING.get("modality", "T1w")
    entries = []
    for cohort in rating_cohorts():
        for subject in COHORTS[cohort].subjects:
            if modality not in full_image_paths(cohort, subject):
                continue
            full = full_image_paths(cohort, subject)[modality]
            for variant in VARIANTS:
                entries.append({
                    "dataset": cohort, "subject": f"{cohort}-{subject}", "variant": variant,
                    "image": variant_image_paths(cohort, subject, variant)[modality],
                    # the brain mask is drawn on the T1w's grid: only offered for the T1w
                    "brain_mask": f"{preparation_dir(cohort, subject)}/brain_mask.nii.gz" if modality == "T1w" else "",
                    "layout_reference": full,
                })
    return entries


def rating_report_inputs(wildcards):
    inputs = []
    for cohort in rating_cohorts():
        c = COHORTS[cohort]
        for subject in c.subjects:
            if c.simulated:
                inputs.append(f"{c.bids_root}/sub-{subject}")
            inputs.append(preparation_dir(cohort, subject))
            inputs += [defaced_dir(cohort, method, subject) for method in METHODS]
    return inputs


def rating_outputs():
    outputs = []
    if RATING.get("reports"):
        outputs += [RATING_REPORTS, RATING_KEY]
    if RATING.get("ratings"):
        outputs += RATING_ANALYSIS
    return outputs
