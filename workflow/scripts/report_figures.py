"""Rule report_figures: the report's account page and figures, from the run history."""

from lead_recovery import figures, history, jobs, rundate, store


def main(snakemake):
    config = snakemake.config
    tz = rundate.zone(config.get("timezone"))
    # the invocation's clock (LEAD_RECOVERY_NOW too), as the Snakefile chose the inputs
    now = rundate.resolve(None, config.get("timezone"), config["day_starts_at"]).decided_at
    return figures.write(
        store.open_store(config),
        since=history.since_instant(snakemake.params.since, now, "report_since"),
        now=now.astimezone(tz),
        tz=tz,
        account_out=snakemake.output.account,
        rows_out=snakemake.output.rows,
        queries_out=snakemake.output.queries,
        metadata_out=snakemake.output.metadata,
    )


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
