"""A store shared by a team: what a run creates is group-writable (teammates can refresh
or delete each other's markers) and never world-readable (extracts hold personal data);
with ``store_group`` it all belongs to that group.
"""

from __future__ import annotations

import grp
import os
import stat

import pytest

DAY = "20250512"
RECIPE = "simulation_to_handoff"


def _a_group_to_give() -> str | None:
    """A group other than ours that we may chown to: any, as root; else a supplementary one."""
    ours = os.getgid()
    if os.geteuid() == 0:
        return next(g.gr_name for g in grp.getgrall() if g.gr_gid != ours)
    others = [g for g in os.getgroups() if g != ours]
    return grp.getgrgid(others[0]).gr_name if others else None


def test_files_are_for_the_team_only_and_belong_to_the_store_group(workflow):
    group = _a_group_to_give()
    if group is None:
        pytest.skip("this user belongs to no second group to hand the store to")
    os.umask(0o022)  # a typical login umask: the workflow must not inherit it
    workflow.run(config={"recipe": RECIPE, "date": DAY, "store_group": group})

    gid = grp.getgrnam(group).gr_gid
    made = [
        workflow.marker(RECIPE, DAY),
        workflow.leads(RECIPE, DAY),
        workflow.analysis(RECIPE, DAY),
        workflow.summary(RECIPE, DAY),
    ]
    for path in made:
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660, (path, oct(info.st_mode))
        assert info.st_gid == gid, path
    for folder in (workflow.leads(RECIPE, DAY).parent, workflow.marker(RECIPE, DAY).parent):
        info = folder.stat()
        assert stat.S_IMODE(info.st_mode) & 0o7777 == 0o2770, (folder, oct(info.st_mode))
        assert info.st_gid == gid
    leases = workflow.marker(RECIPE, DAY).parent / ".leases"
    for path in leases.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o777 in (0o660, 0o770), path
        assert path.stat().st_gid == gid


def test_an_unknown_store_group_is_one_line_and_changes_nothing(workflow):
    result = workflow.run(
        config={"recipe": RECIPE, "date": DAY, "store_group": "no-such-group-xyz"}, ok=False
    )
    assert "store_group 'no-such-group-xyz' is not a group on this machine" in result.output
    assert not workflow.marker(RECIPE, DAY).exists()
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["a file in the way", "read-only"])
def test_a_store_folder_that_cannot_be_written_is_one_line_before_any_query(workflow, kind):
    blocked = workflow.root / "blocked"
    if kind == "a file in the way":
        blocked.write_text("not a folder")
        results = blocked / "results"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to any folder: the read-only case needs another user")
        blocked.mkdir(mode=0o555)
        results = blocked
    result = workflow.run(
        config={"recipe": RECIPE, "date": DAY, "results_dir": str(results)}, ok=False
    )
    errors = [line for line in result.output.splitlines() if "lead-recovery: error:" in line]
    assert len(errors) == 1 and f"results_dir {results}/" in errors[0], result.output
    assert result.queries == 0 and "Traceback" not in result.output
