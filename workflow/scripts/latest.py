"""Rule latest: results/<recipe>/latest.csv -> the newest day's analysis.csv."""

from lead_recovery import analysis, jobs


def main(snakemake):
    analysis.point_latest(snakemake.output.latest, snakemake.input.analysis)


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
