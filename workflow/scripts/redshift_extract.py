"""Rule redshift_extract: put back the day's kept pair if it counts, else query."""

from lead_recovery import jobs, recipes
from lead_recovery.extract import run_job


def main(snakemake):
    recipe = recipes.load(snakemake.config["recipes_dir"], snakemake.wildcards.recipe)
    return run_job(
        snakemake.config,
        recipe=recipe,
        run_date=snakemake.wildcards.date,
        leads_out=snakemake.output.leads,
        marker_out=snakemake.output.marker,
        forced_on_command_line=jobs.forced_on_cli(list(snakemake.output)),
    )


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
