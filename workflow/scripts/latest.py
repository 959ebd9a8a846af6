"""Rule latest: results/<recipe>/latest.csv -> the newest day's analysis.csv."""

from lead_recovery import jobs, layout


def main(snakemake):
    layout.point_latest(snakemake.output.latest, snakemake.input.analysis)


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
