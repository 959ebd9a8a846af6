"""``store_umask`` and ``store_group`` hold for everything written on shared ground, by
every command that writes there: a person's ``snakemake`` run, a cron run (its log,
the run's results, job logs and the store), then ``markers delete``, ``markers
create`` and ``report --html``, all started from a login shell's ``umask 022``.
Nothing written is readable by others (extracts hold names and phone numbers),
everything is the team's to rewrite, and with ``store_group`` every file and folder
belongs to that group.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

EARLIER = "20250513"  # a person's run; cron's is for repo.today
GROUP = "staff"  # an existing group of this machine; created if missing (root only)


def _with_umask_022(argv: list[str]) -> list[str]:
    """``argv`` started as from a login shell: umask 022, which the command must not keep."""
    return ["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", *argv]


def _team_group() -> str:
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
    return GROUP


def _written(roots: list[Path], before: set[Path]) -> list[Path]:
    """Every file and folder under ``roots`` the commands made (not the test's copy)."""
    found = []
    for root in roots:
        if not root.exists():
            continue
        for top, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = Path(top) / name
                if path not in before:
                    found.append(path)
        if root not in before:
            found.append(root)
    return found


def test_every_command_keeps_shared_ground_for_the_team(cron_repo, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving files to another group (chgrp) needs root here")
    group = _team_group()
    gid = grp.getgrnam(group).gr_gid
    repo = cron_repo
    store = tmp_path / "store"  # outside the checkout, made by the first run
    config_file = repo.root / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config.update(store=str(store), store_umask="007", store_group=group)
    config_file.write_text(yaml.safe_dump(config))
    before = set(repo.root.rglob("*"))  # the copy: its demo warehouse in results/

    # a person's run, the day before: it makes results/, logs/ and the store itself
    repo.copy.run(config={"date": EARLIER}, env=repo.code_env(), prefix=_with_umask_022([]))
    cron = subprocess.run(
        _with_umask_022([str(repo.python), str(repo.script)]),
        cwd=repo.elsewhere,
        env=repo.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cron.returncode == 0, repo.log_text()[-5000:]
    helper = [str(repo.python), "-m", "lead_recovery.cli.main"]
    day = [repo.sql_recipe, "--date", repo.today]
    for command in (["markers", "delete", *day], ["markers", "create", *day], ["report", "--html"]):
        done = subprocess.run(
            _with_umask_022([*helper, *command]),
            cwd=repo.root,
            env=repo.env(PATH=f"{repo.python.parent}:/usr/bin:/bin"),  # a login shell's
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert command[1] != "create" or "created" in done.stdout

    written = _written([repo.root / "results", repo.root / "logs", store], before)
    assert repo.log().parent / repo.log().name in written, "the cron log"
    for suffix in (".marker", ".parquet", ".lease", ".jsonl", ".html"):
        assert any(p.suffix == suffix for p in written), suffix
    wrong = []
    for path in written:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):  # latest.csv: a link's own mode means nothing
            if info.st_gid != gid:
                wrong.append(f"{path}: group {info.st_gid}")
            continue
        want = 0o2770 if stat.S_ISDIR(info.st_mode) else 0o660
        mode = stat.S_IMODE(info.st_mode) & (0o7777 if stat.S_ISDIR(info.st_mode) else 0o777)
        if mode != want or info.st_gid != gid:
            wrong.append(f"{path}: {oct(mode)} group {info.st_gid}")
    assert wrong == [], "\n".join(wrong)
