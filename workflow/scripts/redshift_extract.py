"""Rule redshift_extract: query the warehouse, cache the extract, write the marker."""

from lead_recovery import jobs, recipes
from lead_recovery.extract import extract_with


def main(snakemake):
    recipe = recipes.load(snakemake.config["recipes_dir"], snakemake.wildcards.recipe)
    extract_with(
        snakemake.config["warehouse"],
        snakemake.config,
        recipe=recipe,
        run_date=snakemake.wildcards.date,
        leads_out=snakemake.output.leads,
        marker_out=snakemake.output.marker,
    )


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
