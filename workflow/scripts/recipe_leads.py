"""Rule recipe_leads: a recipe's leads.csv as the day's cached leads.parquet."""

import logging

from lead_recovery import analysis, atomic, jobs


def main(snakemake):
    leads = analysis.load_leads(snakemake.input.csv, snakemake.wildcards.recipe)
    atomic.replace_with(snakemake.output.leads, lambda p: leads.to_parquet(p, index=False))
    logging.getLogger("lead_recovery").info(
        "recipe %s: %d leads from %s", snakemake.wildcards.recipe, len(leads), snakemake.input.csv
    )
    return {"rows": len(leads), "source": str(snakemake.input.csv)}


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
