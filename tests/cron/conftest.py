"""The unattended run, as cron runs it: under an empty environment (``env -i``),
from another folder, on a temporary copy of the repository whose ``.venv``
points at this checkout's venv.

The copy has its own ``lead_recovery`` (this checkout's), and ``PYTHONPATH``
names the copy: a repository's own venv (``make venv``) imports the
repository's package, but the venv a worktree links to may be another
checkout's, whose editable install would import that checkout's code, and
whose ``lead-recovery`` would fall back to that checkout as its repository.

What a run did is read from what it left: the day's cron log (its result
line and the jobs Snakemake reported), markers and summaries.

Time and zone are explicit: the clock is pinned (``LEAD_RECOVERY_NOW``), the
copy's config says ``timezone: UTC``, and every run gets a ``TZ`` whose date
differs at that instant (America/Los_Angeles), so a run that used the
machine's zone would date the day wrongly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

NOW = "2025-05-14T06:00:00+00:00"  # cron's "today" in these tests: 20250514 in UTC...
TODAY = "20250514"
HOSTILE_TZ = "America/Los_Angeles"  # ...and still 20250513 here
SQL_RECIPE = "simulation_to_handoff"
CSV_RECIPE = "manual_leads"
_RESULT_RE = re.compile(r" cron\[(?P<pid>\d+)\] result (?P<json>\{.*\})$")

# A recipe whose analysis waits until the test lets it finish (or two minutes pass):
# runs overlap for exactly as long as a test needs, whatever the machine's speed.
HELD_SQL = "SELECT lead_id, phone FROM leads WHERE phone LIKE '+52%' ORDER BY lead_id LIMIT 20\n"
HELD_ANALYZER = """
import os
import time

def analyze(leads, run_date):
    end = time.monotonic() + 120
    while not os.path.exists({release!r}) and time.monotonic() < end:
        time.sleep(0.05)
    return leads
"""


@dataclass
class CronResult:
    returncode: int
    stdout: str
    stderr: str
    pid: int


class CronRepo:
    """A workflow copy that also has the Makefile and a ``.venv`` (links to ours)."""

    today = TODAY
    sql_recipe = SQL_RECIPE
    csv_recipe = CSV_RECIPE

    def __init__(self, copy, elsewhere: Path) -> None:
        self.copy = copy
        self.root = copy.root
        self.elsewhere = elsewhere  # the folder cron "runs from"
        self.python = self.root / ".venv" / "bin" / "python"
        self.script = self.root / "workflow" / "scripts" / "cron.py"
        config = self.root / "config" / "config.yaml"
        config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "timezone": "UTC"}))

    def env(self, **extra: str) -> dict[str, str]:
        """``env -i`` plus only the clock pin, a hostile ``TZ``, the copy's own package
        (the module docstring says why) and what a test adds."""
        return {"LEAD_RECOVERY_NOW": NOW, "TZ": HOSTILE_TZ, **self.code_env(), **extra}

    def code_env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.root)}

    def start(
        self, *args: str, env: dict[str, str] | None = None, new_session: bool = False
    ) -> subprocess.Popen:
        return subprocess.Popen(
            [str(self.python), str(self.script), *args],
            cwd=self.elsewhere,
            env=self.env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=new_session,
        )

    def finish(self, proc: subprocess.Popen, timeout: float = 240) -> CronResult:
        out, err = proc.communicate(timeout=timeout)
        return CronResult(proc.returncode, out, err, proc.pid)

    def cron(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> CronResult:
        """``env -i .venv/bin/python workflow/scripts/cron.py ARGS`` from another folder."""
        return self.finish(self.start(*args, env=env), timeout)

    def make_cron(self, cron_args: str = "", timeout: float = 240) -> CronResult:
        """``env -i /usr/bin/make -s -C <repo> cron``: the convenience, not the crontab line."""
        cmd = [
            "/usr/bin/env",
            "-i",
            f"LEAD_RECOVERY_NOW={NOW}",
            f"TZ={HOSTILE_TZ}",
            *(f"{k}={v}" for k, v in self.code_env().items()),
            "/usr/bin/make",
            "-s",
            "-C",
            str(self.root),
            "cron",
        ]
        if cron_args:
            cmd.append(f"CRON_ARGS={cron_args}")
        proc = subprocess.run(
            cmd, cwd=self.elsewhere, capture_output=True, text=True, timeout=timeout
        )
        return CronResult(proc.returncode, proc.stdout, proc.stderr, -1)

    def crontab(self, timeout: float = 240) -> CronResult:
        """The crontab line of docs/operations.md, run as cron runs it: its command
        (with this copy for ``/path/to/repo``) by ``/bin/sh -c``, from another folder,
        under ``env -i``."""
        command = documented_crontab_command().replace("/path/to/repo", shlex.quote(str(self.root)))
        env = [f"{k}={v}" for k, v in self.env().items()]
        proc = subprocess.run(
            ["/usr/bin/env", "-i", *env, "/bin/sh", "-c", command],
            cwd=self.elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CronResult(proc.returncode, proc.stdout, proc.stderr, -1)

    # What the runs left.
    def log(self, day: str = TODAY) -> Path:
        return self.root / "logs" / "cron" / f"{day}.log"

    def log_text(self, day: str = TODAY) -> str:
        path = self.log(day)
        return path.read_text() if path.exists() else ""

    def summary(self, pid: int | None = None, day: str = TODAY) -> dict[tuple[str, str], dict]:
        """The result lines of run ``pid`` (default: the last run that wrote one)."""
        runs = [m for m in map(_RESULT_RE.search, self.log_text(day).splitlines()) if m]
        if pid is None and runs:
            pid = int(runs[-1]["pid"])
        found = [json.loads(m["json"]) for m in runs if int(m["pid"]) == pid]
        return {(ln["recipe"], ln["date"]): ln for run in found for ln in run["lines"]}

    def queries(self, day: str = TODAY) -> int:
        """How many redshift_extract jobs Snakemake reported in the day's log."""
        return len(
            re.findall(r"^(?:local)?rule redshift_extract:$", self.log_text(day), re.MULTILINE)
        )

    def add_held(self, name: str = "held") -> str:
        """A SQL recipe whose analysis runs until :meth:`release` (two minutes at most)."""
        self.copy.add_recipe(
            name,
            sql=HELD_SQL,
            analyzer=HELD_ANALYZER.format(release=str(self.root / "release")),
            meta={"description": "held analysis", "output_columns": ["lead_id", "phone"]},
        )
        return name

    def release(self) -> None:
        """Let every held analysis finish."""
        (self.root / "release").touch()

    def waiting(self) -> int:
        """How many runs said in the day's log that they wait for another one."""
        return self.log_text().count("is running in this checkout; waiting for it to finish")

    @staticmethod
    def wait_for(condition: Callable[[], object], timeout: float = 60, what: str = "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or condition}")


def documented_crontab_command() -> str:
    """The command of the one crontab line in docs/operations.md (after its schedule)."""
    text = (REPO / "docs" / "operations.md").read_text()
    blocks = re.findall(r"^```crontab\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    lines = [ln for block in blocks for ln in block.splitlines() if re.match(r"[0-9*@]", ln)]
    assert len(lines) == 1, f"one crontab line in docs/operations.md, not {lines}"
    command = lines[0].split(None, 5)[5]
    assert "%" not in command, "cron would read a % as a newline"
    return command


def link_venv(root: Path) -> None:
    """``root/.venv``: links to this checkout's venv, and make's install stamp."""
    source = REPO / ".venv"
    target = root / ".venv"
    target.mkdir()
    for entry in source.iterdir():
        if not entry.name.startswith(".installed-"):
            os.symlink(entry, target / entry.name)
    checksum = subprocess.run(
        "cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1",
        shell=True,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (target / f".installed-{checksum}").touch()


@pytest.fixture
def cron_repo(workflow, tmp_path: Path) -> CronRepo:
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(REPO / name, workflow.root / name)
    # with its bytecode (copy2 keeps the sources' times, so it stays valid): each run
    # starts several Pythons, and compiling the package costs each of them
    shutil.copytree(REPO / "lead_recovery", workflow.root / "lead_recovery", symlinks=True)
    link_venv(workflow.root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return CronRepo(workflow, elsewhere)
