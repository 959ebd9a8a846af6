"""Rule analyze: run a recipe's processing and record where its leads came from."""

import logging
from pathlib import Path

from lead_recovery import analysis, jobs, layout, markers, recipes


def main(snakemake):
    name, day = snakemake.wildcards.recipe, snakemake.wildcards.date
    recipe = recipes.load(snakemake.config["recipes_dir"], name)
    source = recipes.leads_source(recipe, bool(snakemake.config.get("skip_redshift")))
    leads = analysis.load_leads(snakemake.input.leads, name)
    result = analysis.analyze(leads, recipe, day)
    summary = {
        "recipe": name,
        "run_date": day,
        "decided_at": jobs.decided_at(),
        "rows_in": len(leads),
        "source": source,
        "leads_file": str(snakemake.input.leads),
    }
    if source == "redshift":
        marker = markers.read_marker(snakemake.input.marker)
        queried_now = marker.record.get("run_id") == jobs.run_id()
        summary["source"] = "queried" if queried_now else "cached"
        summary["queried_at"] = marker.record.get("queried_at")
        summary["marker"] = str(snakemake.input.marker)
    elif source == "skipped_redshift":
        cached = Path(snakemake.input.leads)  # a copy, or the store's extract itself
        summary["cache_date"] = layout.extract_day(cached) if cached.suffix == ".parquet" else None
    analysis.write_outputs(result, summary, snakemake.output.analysis, snakemake.output.summary)
    logging.getLogger("lead_recovery").info(
        "recipe %s %s: %d leads in, %d rows out (%s)",
        name,
        day,
        len(leads),
        len(result),
        summary["source"],
    )
    return {"rows_in": len(leads), "rows_out": len(result), "source": summary["source"]}


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
