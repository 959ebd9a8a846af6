"""Rule demo_warehouse: build the embedded DuckDB demo warehouse."""

import logging

from lead_recovery import jobs
from lead_recovery.warehouse import demo


def main(snakemake):
    settings = snakemake.config["duckdb"]
    rows = demo.build(snakemake.output[0], settings["rows"], settings["seed"])
    logging.getLogger("lead_recovery").info(
        "demo warehouse %s: %d synthetic leads", snakemake.output[0], rows
    )


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
