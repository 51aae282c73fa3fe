# defacebench: what defacing MRI does to automated image analysis (after de Sitter et al. 2020).
# Default study: `snakemake --cores all`. Another study: add `--configfile config/studies/desitter2020.yaml`.
from snakemake.utils import min_version, validate

min_version("9.0")


from defacebench.study import ConfigFileError, read_config_file

try:  # Snakemake's own loader names neither the file nor the line of a YAML error
    read_config_file("config/config.yaml")
except ConfigFileError as exc:
    raise WorkflowError(str(exc))


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


from defacebench.study import config_schema_errors

# one line per error (key path, problem, allowed values) instead of validate's dump of the schema and config;
# validate then still fills in the schema's defaults
CONFIG_ERRORS = config_schema_errors(config, "workflow/schemas/config.schema.yaml")
if CONFIG_ERRORS:
    raise WorkflowError("Invalid study configuration:\n  " + "\n  ".join(CONFIG_ERRORS))
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"

wildcard_constraints:
    cohort="[A-Za-z0-9]+",
    subject="[A-Za-z0-9]+",
    method="[A-Za-z0-9_]+",
    variant="[A-Za-z0-9_]+",
    outcome="NBV|WMLV|GBV",


include: "workflow/rules/simulate.smk"
include: "workflow/rules/deface.smk"
include: "workflow/rules/analyse.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/quality.smk"
include: "workflow/rules/privacy_common.smk"
include: "workflow/rules/privacy.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/rating_common.smk"
include: "workflow/rules/rating.smk"
include: "workflow/rules/share.smk"


# Provins et al. (2025) from its published tables, when the config has its block
if PROVINS2025:

    include: "workflow/rules/provins2025.smk"


rule all:
    input:
        study_outputs(),
        rating_outputs(),
        share_outputs(),  # only with a share: block (or share_method)
    default_target: True


onsuccess:
    print_summary()
    print_report_location()
