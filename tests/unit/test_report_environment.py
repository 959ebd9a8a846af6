"""`lead-recovery report --html` runs Snakemake with what cron's environment lacks."""

from __future__ import annotations

import sys

from lead_recovery.cli import report


def test_report_steps_run_with_a_path_even_under_env_i(monkeypatch, tmp_path):
    """Under ``env -i`` Snakemake's report stopped on ``KeyError: 'PATH'``."""
    monkeypatch.delenv("PATH", raising=False)
    check = "import os, sys; sys.exit(0 if os.environ.get('PATH') else 3)"
    report._step([sys.executable, "-c", check], tmp_path, "the step")  # raises on exit 3
