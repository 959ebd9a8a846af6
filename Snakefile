# Lead recovery: every recipe, every day, Redshift queried at most once per day.
# The DAG lives in workflow/rules/; the logic in the lead_recovery package.
from snakemake.utils import min_version

min_version("9.27.1")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/warehouse.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/leads.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/broken.smk"
include: "workflow/rules/report.smk"


# Cheap steps run in Snakemake's own process or host, never as cluster jobs
# (profiles/slurm): a symlink, a small CSV, the demo warehouse, a one-line
# error, the report's pages.
localrules:
    latest,
    recipe_leads,
    demo_warehouse,
    broken_recipe,
    report_figures,


rule all:
    default_target: True
    input:
        all_inputs,
        report_pages,


onstart:
    run_started()
