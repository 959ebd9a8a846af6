"""Rule broken_recipe: fail with the recipe's one-line cause (found at parse time)."""

from lead_recovery import jobs
from lead_recovery.errors import LeadRecoveryError


def main(snakemake):
    raise LeadRecoveryError(snakemake.params.cause)


jobs.run(snakemake, main)  # noqa: F821 - injected by Snakemake
