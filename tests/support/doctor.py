"""``lead-recovery doctor`` in this process, as a user runs it: through the command's
entry point (its exit codes and one-line errors), with click's ``CliRunner`` isolation
for the environment, stdout and stderr. No Snakemake, no subprocess."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from click.testing import CliRunner

from lead_recovery.cli.main import main
from tests.support.workflow import REPO

# Credential values that must never reach the output.
SENTINELS = {
    "REDSHIFT_PASSWORD": "sentinel-redshift-password-5d1e",
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-key-88c2b0",
    "AWS_SESSION_TOKEN": "sentinel-aws-session-token-a41f",
}


@dataclass
class Doctored:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> dict[str, str]:
        """The printed lines by check name (``[ok] store: ...`` under ``store``)."""
        return {line.split("] ", 1)[1].split(": ", 1)[0]: line for line in self.out.splitlines()}


def doctor(repo: Path, *args: str, env: dict[str, str | None] | None = None) -> Doctored:
    """``lead-recovery doctor --repo REPO ARGS`` with ``env`` over this process's environment
    (a ``None`` value removes the variable); every ``REDSHIFT_*`` not in ``env`` removed."""
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REDSHIFT_")}
    with CliRunner().isolation(env={**cleared, **(env or {})}) as (out, err, _):
        code = main(["doctor", "--repo", str(repo), *args])
        sys.stdout.flush()
        sys.stderr.flush()
    return Doctored(code, out.getvalue().decode(), err.getvalue().decode())


def doctor_json(repo: Path, env: dict[str, str | None] | None = None) -> list[dict]:
    done = doctor(repo, "--json", env=env)
    return json.loads(done.out)


def doctor_repo(root: Path, **config: object) -> Path:
    """The workflow's config, schemas and recipes at ``root``, with ``config`` set in
    config/config.yaml."""
    for part in ("config", "workflow/schemas", "recipes"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "config/config.yaml"
    path.write_text(yaml.safe_dump({**(yaml.safe_load(path.read_text()) or {}), **config}))
    return root
