"""Rule redshift_extract: the day's pair from the store if it counts, else a query."""

from pathlib import Path

from lead_recovery import jobs, recipes
from lead_recovery.day import Views
from lead_recovery.extract import run_job


def main(snakemake):
    recipe = recipes.load(snakemake.config["recipes_dir"], snakemake.wildcards.recipe)
    return run_job(
        snakemake.config,
        recipe=recipe,
        run_date=snakemake.wildcards.date,
        views=Views(Path(snakemake.output.leads), Path(snakemake.output.marker)),
        forced_on_command_line=jobs.forced_on_cli(list(snakemake.output)),
    )


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
