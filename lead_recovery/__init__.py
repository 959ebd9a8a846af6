"""Daily lead-recovery recipes as a Snakemake workflow with date-keyed Redshift markers."""

__version__ = "0.1.0"
