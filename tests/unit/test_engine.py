"""Every use of Snakemake's internals (lead_recovery/engine.py), run against the pinned
Snakemake on a tiny workflow of its own: an upgrade that moves any of them fails here."""

from __future__ import annotations

import json
import textwrap

from lead_recovery import engine
from tests.support.workflow import WorkflowCopy

SNAKEFILE = textwrap.dedent(
    """
    import json
    from lead_recovery import engine

    engine.hide_status_lines(workflow)

    rule all:
        input:
            "b.txt",

    rule a:
        output:
            "a.txt",
        shell:
            "date +%s%N > {output}"

    def seen(wildcards):
        if engine.real_run(workflow) and engine.clear_stale_lock(workflow):
            print("cleared a stale lock")
        record = {
            "forced": [engine.forced_on_cli(workflow, "a")[0],
                       sorted(engine.forced_on_cli(workflow, "a")[1])],
            "only_all": engine.only_rule_all(workflow),
            "main": engine.is_main(workflow),
            "real": engine.real_run(workflow),
            "dry": engine.dry_run(workflow),
            "locks": engine.takes_lock(workflow),
            "executor": engine.executor_name(workflow),
            "configfiles": engine.configfiles(workflow),
        }
        with open("seen.json", "w") as out:
            json.dump(record, out)
        if config.get("force_a"):
            engine.force(workflow, ["a.txt"])
        return "a.txt"

    rule b:
        input:
            engine.signature_once(seen),
        output:
            "b.txt",
        shell:
            "cat {input} > {output}"

    onstart:
        with open("jobs.json", "w") as out:
            json.dump(sorted(list(j) for j in engine.jobs_to_run(workflow)), out)
    """
)


def test_the_pinned_snakemake_is_the_one_whose_internals_engine_uses():
    assert engine.version() == engine.PINNED


def test_every_internal_the_workflow_uses_does_what_it_relies_on(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text("force_a: false\n")
    copy = WorkflowCopy(tmp_path)

    def seen() -> dict:
        return json.loads((tmp_path / "seen.json").read_text())

    def jobs() -> list:
        return json.loads((tmp_path / "jobs.json").read_text())

    ran = copy.run("-c1", "--configfile", "config.yaml")
    assert "Select jobs to execute..." in ran.output  # not quiet: every status line
    assert seen()["only_all"] and seen()["main"] and seen()["real"] and seen()["locks"]
    assert seen()["executor"] == "local" and seen()["configfiles"][-1].endswith("config.yaml")
    assert [j[0] for j in jobs()] == ["a", "all", "b"]  # onstart: the jobs the run runs
    first = (tmp_path / "a.txt").read_text()

    copy.run("-c1", "-n", "-R", "a")  # the command line's forcing, read before ours
    assert seen()["forced"] == [True, []] and seen()["dry"] and not seen()["real"]
    copy.run("-c1", "-n", "--forcerun", "a.txt", "b")
    assert seen()["forced"] == [False, ["a.txt"]] and not seen()["only_all"]

    (tmp_path / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("a killed run's")
    forced = copy.run("-c1", "--config", "force_a=true", "--quiet", "rules")  # by the workflow
    assert "cleared a stale lock" in forced.output and "LockException" not in forced.output
    for status in ("Building DAG of jobs...", "Select jobs to execute...", "Execute 1 jobs..."):
        assert status not in forced.output  # quiet about rules: no status line either
    assert (tmp_path / "a.txt").read_text() != first  # engine.force made Snakemake rerun it
    assert not list((tmp_path / ".snakemake" / "locks").glob("*.lock"))
