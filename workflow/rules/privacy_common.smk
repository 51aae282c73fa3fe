# Input functions and paths of the privacy rules (workflow/rules/privacy.smk).


def privacy_record_path(cohort, subject, variant):
    return f"{RESULTS}/records/{cohort}/privacy/sub-{subject}_variant-{variant}.json"


def privacy_image(cohort, subject, variant):
    """(modality, path) of the image a subject's variant is rendered from: its T1w, else its first image."""
    from defacebench.reidentification.run import image_for_render

    return image_for_render(variant_image_paths(cohort, subject, variant))


def privacy_image_inputs(wildcards):
    inputs = dict(subject_source(wildcards))
    if wildcards.variant != "none":
        inputs["defaced"] = defaced_dir(wildcards.cohort, wildcards.variant, wildcards.subject)
        inputs["deface_record"] = deface_record(wildcards.cohort, wildcards.variant, wildcards.subject)
    return inputs


def cohort_privacy_records(wildcards):
    c = COHORTS[wildcards.cohort]
    return [privacy_record_path(c.name, subject, variant) for subject in c.subjects for variant in VARIANTS]


def privacy_outputs():
    """The privacy tables and figures of every cohort, when the config's privacy.attack is on."""
    if not PRIVACY.get("attack", False):
        return []
    return [f"{RESULTS}/tables/{name}_privacy{suffix}" for name in COHORTS
            for suffix in (".tsv", ".md", "_tradeoff.png")]
