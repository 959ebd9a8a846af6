"""A temporary copy of the real workflow, run with the real Snakemake in a
subprocess, exactly as a user runs it.

Whether a query happened is read from what the extract jobs themselves recorded
(the end-of-run account's ``queried`` lines), or in a dry run from the plan's
``will query`` lines; never by mocking the rule. An extract job may also run
only to give a checkout its copies of a day the store holds: that is no query.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import yaml

from lead_recovery import jobs, layout, markers
from tests.support.preloaded import Preloaded

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "recipes", "profiles")
DEMO_DB = "results/warehouse/demo.duckdb"
_JOB_RE = re.compile(r"^(?:local)?rule (\w+):$", re.MULTILINE)
_QUERIED_RE = re.compile(r"^\S+ \d{8} queried \(")
_WILL_QUERY_RE = re.compile(
    r"^\S+ \d{8}: (?:will query: |.*; will check the source watermark)", re.M
)


# Trials of the concurrency scenarios (tests/core/test_shared_markers.py, the S3
# one): 1 in `make test`, which has 8 minutes; `LEAD_RECOVERY_TRIALS=10 make test`
# (or bench/stress_shared_store.py) for the ten.
TRIALS = max(1, int(os.environ.get("LEAD_RECOVERY_TRIALS", "1")))


def profile(name: str, *, verbose: bool = False) -> dict:
    """``profiles/<name>/config.yaml`` as Snakemake reads it (a YTE template if it says so),
    in an environment without (or with) ``LEAD_RECOVERY_VERBOSE=1``."""
    import yte

    env = {**os.environ, jobs.VERBOSE_ENV: "1" if verbose else "0"}
    with patch.dict(os.environ, env, clear=True):
        text = (REPO / "profiles" / name / "config.yaml").read_text()
        return yte.process_yaml(text, require_use_yte=True)


def clean_env(**extra: str | None) -> dict[str, str]:
    """The caller's environment without this tool's or Redshift's settings, with
    ``extra`` (a ``None`` value removes that variable).

    Runs are verbose (``LEAD_RECOVERY_VERBOSE=1``): they print Snakemake's job blocks,
    which :attr:`RunResult.jobs` counts, and the jobs' notes. A test of the default,
    quiet output passes ``LEAD_RECOVERY_VERBOSE=None``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAD_RECOVERY_", "REDSHIFT_", "SNAKEMAKE_"))
    }
    env[jobs.VERBOSE_ENV] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


_preloaded: list[Preloaded | None] = []
_preloaded_lock = threading.Lock()


def preloaded() -> Preloaded | None:
    """This test worker's preloaded Snakemake (tests/support/preloaded.py), started at
    its first run; None when ``LEAD_RECOVERY_TEST_EXEC=1`` asks for plain processes."""
    with _preloaded_lock:
        if not _preloaded:
            exec_only = os.environ.get("LEAD_RECOVERY_TEST_EXEC") == "1"
            _preloaded.append(None if exec_only else Preloaded(clean_env()))
        return _preloaded[0]


def config_args(config: dict[str, object]) -> list[str]:
    """``--config`` arguments as a user would type them."""
    args = []
    for key, value in config.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, list | tuple):
            value = "[" + ",".join(map(str, value)) + "]"
        args.append(f"{key}={value}")
    return ["--config", *args] if args else []


@dataclass
class RunResult:
    returncode: int
    output: str

    @property
    def jobs(self) -> Counter:
        """How many jobs of each rule Snakemake ran (or, in a dry run, would run)."""
        return Counter(_JOB_RE.findall(self.output))

    @property
    def account(self) -> list[str] | None:
        """The end-of-run account's lines (``None``: no account, e.g. a dry run)."""
        lines = self.output.splitlines()
        heads = [i for i, line in enumerate(lines) if "what this run did (run id" in line]
        if not heads:
            return None
        block = []
        for line in lines[heads[-1] + 1 :]:
            block.append(line)
            if line.startswith("total:"):
                break
        return block

    @property
    def queries(self) -> int:
        """Recipe-days the warehouse was queried for: as the jobs recorded it (the
        account), or in a dry run, as the plan says it will."""
        account = self.account
        if account is None:
            return len(_WILL_QUERY_RE.findall(self.output))
        return sum(1 for line in account if _QUERIED_RE.match(line))


class WorkflowCopy:
    """A throw-away copy of the workflow in its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(
        self,
        *args: str,
        config: dict[str, object] | None = None,
        env: dict[str, str | None] | None = None,
        ok: bool | None = True,
        prefix: list[str] | None = None,
        timeout: float = 300,
        preload: bool = True,
    ) -> RunResult:
        """Run ``snakemake`` here; ``ok`` asserts success (True) or failure (False).

        Through this worker's preloaded Snakemake (tests/support/preloaded.py) when the
        run fits it; ``preload=False`` or a ``prefix`` start ``python -m snakemake``."""
        argv = [*args, *config_args(config or {})]
        run_env = clean_env(**(env or {}))
        done = None
        if preload and not prefix:
            server = preloaded()
            if server is not None and server.fits(run_env):
                done = server.run(argv, self.root, run_env, timeout)
        if done is None:
            proc = subprocess.run(
                [*(prefix or []), sys.executable, "-m", "snakemake", *argv],
                cwd=self.root,
                env=run_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            done = proc.returncode, proc.stdout
        result = RunResult(*done)
        if ok is True:
            assert result.returncode == 0, f"snakemake failed:\n{result.output[-6000:]}"
        elif ok is False:
            assert result.returncode != 0, (
                f"snakemake unexpectedly succeeded:\n{result.output[-6000:]}"
            )
        return result

    def start(
        self,
        *args: str,
        config: dict[str, object] | None = None,
        env: dict[str, str | None] | None = None,
        output: Path | None = None,
        prefix: list[str] | None = None,
    ):
        """Start ``snakemake`` here in its own process group (so a test can stop or kill
        all of it) and return at once: a ``subprocess.Popen``, or its like from this
        worker's preloaded Snakemake (``pid``, ``poll``, ``wait``, ``returncode``).
        ``output``: a file for what it prints (default: discarded)."""
        argv = [*args, *config_args(config or {})]
        run_env = clean_env(**(env or {}))
        target = output if output is not None else Path(os.devnull)
        server = preloaded() if not prefix else None
        if server is not None and server.fits(run_env):
            return server.start(argv, self.root, run_env, target)
        with open(target, "wb") as out:
            return subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "snakemake", *argv],
                cwd=self.root,
                env=run_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # Paths, computed by the same functions the workflow uses.
    def marker(self, recipe: str, day: str) -> Path:
        return self.root / markers.marker_path("results/markers", recipe, day)

    def leads(self, recipe: str, day: str) -> Path:
        return self.root / layout.leads_path("results", recipe, day)

    def analysis(self, recipe: str, day: str) -> Path:
        return self.root / layout.analysis_path("results", recipe, day)

    def summary(self, recipe: str, day: str) -> Path:
        return self.root / layout.summary_path("results", recipe, day)

    def latest(self, recipe: str) -> Path:
        return self.root / layout.latest_path("results", recipe)

    def add_recipe(
        self,
        name: str,
        *,
        sql: str | None = None,
        csv: str | None = None,
        meta: dict | str | None = None,
        analyzer: str | None = None,
    ) -> Path:
        folder = self.root / "recipes" / name
        folder.mkdir(parents=True, exist_ok=True)
        if meta is None:
            meta = {"description": f"test recipe {name}", "output_columns": ["lead_id"]}
        (folder / "meta.yml").write_text(meta if isinstance(meta, str) else yaml.safe_dump(meta))
        if sql is not None:
            (folder / "redshift.sql").write_text(textwrap.dedent(sql))
        if csv is not None:
            (folder / "leads.csv").write_text(textwrap.dedent(csv))
        if analyzer is not None:
            (folder / "analyzer.py").write_text(textwrap.dedent(analyzer))
        return folder

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every data file under results/ with its size and mtime, to prove nothing changed.

        Leases (``markers/.leases/``), the run history (``markers/.history/``), the
        lock files of the store's conditional writes and the note saying whose results
        folder it is are the runs' bookkeeping, not data.
        """
        base = self.root / "results"
        return {
            str(p.relative_to(self.root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(base.rglob("*"))
            if (p.is_file() or p.is_symlink())
            and not {".leases", ".history"} & set(p.parts)
            and p.name not in (".lock", ".lead-recovery-checkout")
        }


def copy_workflow(root: Path) -> WorkflowCopy:
    """Copy the workflow's own files (not results, logs or .snakemake) to ``root``."""
    root.mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / part)
    return WorkflowCopy(root)
