"""``lead-recovery doctor``: whether this checkout can run, one line per check
(the checks are lead_recovery/doctor.py's)."""

from __future__ import annotations

import os
import sys

import click

from lead_recovery import doctor
from lead_recovery.cli.common import CONTEXT, NO, OK, find_repo, print_json, repo_option

_EPILOG = """\b
Examples:
  lead-recovery doctor                  every check, one line each
  lead-recovery doctor --json           the same as one JSON array
  lead-recovery doctor --timeout 30     a slow network to the warehouse

\b
Checks: the config against its schema; every recipe (meta.yml, the SQL parses as
Redshift SQL, analyzer.py imports); the store (a probe object created, replaced
conditionally and deleted; its clock); the warehouse (connects, SELECT 1; for
Redshift the way in, TLS, single node, and the UNLOAD settings).
[unknown] is not a failure. Exit 0: no check failed; 1: one did; 2: bad arguments,
or a config that cannot be read. It writes no marker and no extract.
"""


@click.command("doctor", context_settings=CONTEXT, epilog=_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of checks instead of lines.")
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    type=click.FloatRange(min=0.5),
    help="How long the warehouse may take to connect and answer SELECT 1.",
)
@repo_option
def command(as_json: bool, timeout: float, repo: str | None) -> int:
    """Check the config, the recipes, the store and the warehouse, one line each."""
    checks = doctor.run(find_repo(repo), os.environ, timeout_s=timeout)
    if as_json:
        print_json([c._asdict() for c in checks])
    else:
        sys.stdout.write("".join(c.line() + "\n" for c in checks))
    bad = doctor.failed(checks)
    unknown = sum(c.ok is None for c in checks)
    if bad:
        print(
            f"lead-recovery doctor: {len(bad)} of {len(checks)} checks failed: {', '.join(bad)}",
            file=sys.stderr,
        )
        return NO
    print(
        f"lead-recovery doctor: no check failed ({len(checks)} checks, {unknown} unknown)",
        file=sys.stderr,
    )
    return OK
