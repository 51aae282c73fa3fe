# The share step's settings and input functions (rules in share.smk; see docs/sharing.md).
from defacebench.sharing.options import ShareConfigError, share_options


def share_settings():
    """The complete share options, or None when no share is asked for (no `share:` block, no share_method)."""
    if not config.get("share") and not config.get("share_method"):
        return None
    try:
        opts = share_options(config.get("share"), config.get("share_method"))
    except ShareConfigError as exc:
        raise WorkflowError(f"Invalid study configuration: {exc}")
    if opts["method"] not in METHODS:
        raise WorkflowError(f"Invalid study configuration: share.method (or share_method) {opts['method']!r} "
                            f"is not one of the study's methods ({', '.join(METHODS)})")
    for name in opts["cohorts"] or []:
        if name not in COHORTS:
            raise WorkflowError(f"Invalid study configuration: share.cohorts: no cohort named {name!r} "
                                f"(cohorts: {', '.join(COHORTS)})")
    return opts


SHARE = share_settings()


def share_dir(cohort, method):
    return f"{RESULTS}/share/{cohort}/{method}"


def share_report(cohort, method):
    # beside the share, not in it: the report names the study's folders
    return f"{RESULTS}/share/{cohort}/{method}_report.json"


def share_key(cohort, method):
    # a folder of its own, so that uploading share/ never uploads a relabelling key
    return f"{RESULTS}/share_keys/{cohort}/{method}_relabel.tsv"


def share_outputs():
    """The shares asked for: one folder and its report per cohort (every cohort unless share.cohorts)."""
    if SHARE is None:
        return []
    cohorts = SHARE["cohorts"] or list(COHORTS)
    return [p for c in cohorts for p in (share_dir(c, SHARE["method"]), share_report(c, SHARE["method"]))]


def share_target(wildcards):
    if SHARE is None:
        raise WorkflowError("snakemake share: no method to share; pass --config share_method=<method> "
                            "or add a share: block (share.method) to the config")
    return share_outputs()


def share_inputs(wildcards):
    """The method's defacing outputs of every subject, and for a simulated cohort its dataset files."""
    c = COHORTS[wildcards.cohort]
    inputs = {
        "defaced": [defaced_dir(c.name, wildcards.method, s) for s in c.subjects],
        "records": [deface_record(c.name, wildcards.method, s) for s in c.subjects],
    }
    if c.simulated:
        inputs["dataset"] = [f"{c.bids_root}/participants.tsv", f"{c.bids_root}/dataset_description.json"]
    return inputs
