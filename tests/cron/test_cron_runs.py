"""The unattended run as cron runs it: `env -i`, from another folder, with the real
Snakemake on a temporary copy of the repository; the documented crontab line itself,
and `make cron`, the convenience.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import timedelta

import pyarrow.parquet as pq

from lead_recovery import layout, rundate

ENV_CHECK_ANALYZER = """
import os
import sys

def analyze(leads, run_date):
    out = leads.copy()
    out["has_password"] = "yes" if os.environ.get("REDSHIFT_PASSWORD") == "pw-0xDEADBEEF" else "no"
    out["has_home"] = "yes" if os.environ.get("HOME") else "no"
    out["venv_python"] = "yes" if "/.venv/" in sys.executable else "no"
    return out
"""


def _days_before(day: str, n: int) -> str:
    return (rundate.to_date(day) - timedelta(days=n)).strftime("%Y%m%d")


def test_make_cron_twice_in_one_day_queries_once(cron_repo):
    """`make cron`, twice: the second run queries nothing; success prints nothing."""
    repo = cron_repo
    repo.copy.add_recipe(
        "envcheck",
        csv="lead_id\n1\n",
        analyzer=ENV_CHECK_ANALYZER,
        meta={
            "description": "sees the environment",
            "output_columns": ["lead_id", "has_password", "has_home", "venv_python"],
        },
    )
    (repo.root / ".env").write_text("REDSHIFT_PASSWORD=pw-0xDEADBEEF\n")
    log_dir = repo.root / "logs" / "cron"
    log_dir.mkdir(parents=True)
    too_old, kept = _days_before(repo.today, 31), _days_before(repo.today, 30)
    for day in (too_old, kept):
        (log_dir / f"{day}.log").write_text("an old run\n")

    first = repo.make_cron()
    assert first.returncode == 0, repo.log_text()[-5000:]
    assert (first.stdout, first.stderr) == ("", ""), "a successful cron run must print nothing"
    summary = repo.summary()
    assert summary[(repo.sql_recipe, repo.today)]["status"] == "queried"
    assert summary[(repo.csv_recipe, repo.today)]["status"] == "skipped"
    assert summary[("envcheck", repo.today)]["status"] == "skipped"
    assert repo.queries() == 1
    marker = repo.copy.marker(repo.sql_recipe, repo.today)
    record = json.loads(marker.read_text())
    assert summary[(repo.sql_recipe, repo.today)]["rows"] == record["rows"]
    assert record["rows"] == pq.read_metadata(repo.copy.leads(repo.sql_recipe, repo.today)).num_rows
    seen = repo.copy.analysis("envcheck", repo.today).read_text().splitlines()[1]
    assert seen == "1,yes,yes,yes"  # credentials from .env, HOME, the repo's venv
    assert "pw-0xDEADBEEF" not in repo.log_text()
    before = (marker.read_bytes(), marker.stat().st_mtime_ns)

    second = repo.make_cron()
    assert second.returncode == 0, repo.log_text()[-5000:]
    assert (second.stdout, second.stderr) == ("", "")
    summary = repo.summary()
    assert summary[(repo.sql_recipe, repo.today)]["status"] == "cached"
    assert summary[(repo.csv_recipe, repo.today)]["status"] == "skipped"
    assert repo.queries() == 1, "the second run of the day must not query"
    assert (marker.read_bytes(), marker.stat().st_mtime_ns) == before

    assert not (log_dir / f"{too_old}.log").exists()
    assert (log_dir / f"{kept}.log").exists()
    assert sorted(p.name for p in log_dir.glob("*.log")) == [f"{kept}.log", f"{repo.today}.log"]

    shown = repo.cron("--report", "today")
    assert shown.returncode == 0
    assert shown.stdout.count("summary of run") == 2
    assert re.search(
        rf"{repo.sql_recipe}\s+{repo.today}\s+cached\s+{record['rows']}\s", shown.stdout
    )
    runs = json.loads(repo.cron("--report", "today", "--json").stdout)
    assert [r["exit"] for r in runs] == [0, 0]
    assert [ln["status"] for ln in runs[1]["lines"] if ln["recipe"] == repo.sql_recipe] == [
        "cached"
    ]


def test_the_documented_crontab_line_exits_1_for_a_failed_recipe_and_2_for_bad_config(cron_repo):
    """docs/operations.md's crontab line as cron runs it: one failing recipe does not stop
    the others, and the exit status is the command's own (no make in between: make
    exits 2 for any failure and adds a `make: ***` line to the mail)."""
    repo = cron_repo
    repo.copy.add_recipe("broken", sql="SELECT no_such_column AS lead_id FROM leads\n")
    repo.copy.add_recipe("bad_meta", csv="lead_id\n1\n", meta="description: no columns\n")

    result = repo.crontab()

    assert result.returncode == 1, repo.log_text()[-5000:]
    summary = repo.summary()
    broken = summary[("broken", repo.today)]
    assert broken["status"] == "failed"
    assert "no_such_column" in broken["detail"]
    bad_meta = summary[("bad_meta", repo.today)]
    assert bad_meta["status"] == "failed" and "'output_columns' is missing" in bad_meta["detail"]
    assert summary[(repo.sql_recipe, repo.today)]["status"] == "queried"
    assert summary[(repo.csv_recipe, repo.today)]["status"] == "skipped"
    assert repo.copy.marker(repo.sql_recipe, repo.today).exists()
    assert repo.copy.latest(repo.sql_recipe).exists()
    assert not repo.copy.marker("broken", repo.today).exists()
    # Not a terminal: the failure (and only then) is printed, for cron's mail.
    assert "broken" in result.stderr and "failed" in result.stderr
    assert str(repo.log()) in result.stderr
    assert not re.search(r"^make\b", result.stdout + result.stderr, re.MULTILINE)
    assert repo.log_text().rstrip().endswith("exit 1")

    logged = repo.log_text()
    config = repo.root / "config" / "config.yaml"
    config.write_text(config.read_text().replace("warehouse: duckdb", "warehouse: duckbd"))
    bad_config = repo.crontab()
    assert bad_config.returncode == 2
    assert (bad_config.stdout, bad_config.stderr.splitlines()) == (
        "",
        ["lead-recovery: error: config: warehouse: 'duckbd' is not one of ['duckdb', 'redshift']"],
    )
    assert repo.log_text() == logged, "bad configuration runs nothing and logs nothing"


def test_a_named_recipe_that_cannot_load_fails_without_stopping_the_run(cron_repo):
    """Snakemake stops at a recipe named on its command line that cannot load: cron
    leaves it out of the run and reports it failed itself (here it is the only one)."""
    repo = cron_repo
    repo.copy.add_recipe("bad_meta", csv="lead_id\n1\n", meta="description: no columns\n")

    result = repo.cron("bad_meta")

    assert result.returncode == 1
    bad_meta = repo.summary(result.pid)[("bad_meta", repo.today)]
    assert bad_meta["status"] == "failed" and "'output_columns' is missing" in bad_meta["detail"]
    assert "bad_meta" in result.stderr and str(repo.log()) in result.stderr
    assert "running: snakemake" not in repo.log_text()


def test_overlapping_cron_runs_wait_and_never_query_twice(cron_repo):
    """Each cron run starts Snakemake at once; the workflow waits for the checkout (as
    every run does) as long as cron says: an impatient run gives up having run no job
    and recorded nothing, and a patient one finds the day cached."""
    repo = cron_repo
    name = repo.add_held()
    first = repo.start(name)
    repo.wait_for(  # said once the first run holds the checkout
        lambda: f"{name} {repo.today}: will query" in repo.log_text(),
        what="the first run to hold the checkout",
    )

    impatient = repo.cron(name, "--wait", "1s")
    assert impatient.returncode == 75
    assert impatient.stderr.strip().splitlines() == [
        "lead-recovery cron: another run still works in this checkout after 1s; nothing was "
        f"run. Log: {repo.log()}"
    ]
    assert repo.waiting() == 1
    second = repo.start(name)  # waits (default: config cron.wait) for the first
    repo.wait_for(lambda: repo.waiting() == 2, what="the second run to wait")
    repo.release()
    done, second = repo.finish(first), repo.finish(second)

    assert done.returncode == 0, repo.log_text()[-5000:]
    assert second.returncode == 0, repo.log_text()[-5000:]
    log = repo.log_text()
    assert f"cron[{impatient.pid}] gave up: another run still works in this checkout" in log
    assert "still runs in this checkout after 1 s (cron.wait or --wait); nothing was run" in log
    assert repo.summary(first.pid)[(name, repo.today)]["status"] == "queried"
    assert repo.summary(second.pid)[(name, repo.today)]["status"] == "cached"
    assert repo.queries() == 1
    assert log.count("rule analyze:") == 1, "only the first run ran jobs"
    runs = list((repo.root / "results" / layout.HISTORY).rglob("*.jsonl"))
    assert len(runs) == 2, "the impatient run recorded nothing"
    assert "LockException" not in log


def test_cron_waits_for_a_person_running_snakemake(cron_repo):
    repo = cron_repo
    name = repo.add_held()
    person = subprocess.Popen(
        [str(repo.python), "-m", "snakemake", "--config", f"recipe={name}"],
        cwd=repo.root,
        env={**repo.env(), "PATH": f"{repo.python.parent}:/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    locks = repo.root / ".snakemake" / "locks"  # taken after the checkout: it is held
    repo.wait_for(lambda: any(locks.glob("*.lock")), what="the person's Snakemake lock")

    cron = repo.start(name)
    repo.wait_for(lambda: repo.waiting() == 1, what="cron to wait for the person's run")
    repo.release()
    result = repo.finish(cron)

    person_out, _ = person.communicate(timeout=120)
    assert person.returncode == 0, person_out[-3000:]
    assert result.returncode == 0, repo.log_text()[-5000:]
    log = repo.log_text()
    assert "LockException" not in log and "--unlock" not in log
    assert repo.summary(result.pid)[(name, repo.today)]["status"] == "cached"
    assert person_out.count(f"{name} {repo.today} queried (") == 1  # its (quiet) account
    assert repo.queries() == 0


SLOW_SQL = """
SELECT COUNT(*)::VARCHAR AS lead_id
FROM leads AS a CROSS JOIN leads AS b
WHERE a.phone < b.phone AND a.created_at <= :run_date::date
"""


def test_next_run_completes_after_a_run_killed_mid_query(cron_repo):
    """SIGKILL to the whole run (reboot, OOM, systemd) while the query runs."""
    repo = cron_repo
    folder = repo.copy.add_recipe("slow", sql=SLOW_SQL)
    killed = repo.start("slow", new_session=True)
    day_dir = repo.copy.leads("slow", repo.today).parent
    repo.wait_for(  # the kill lands while the query runs into its temporary file
        lambda: (
            "querying duckdb warehouse for recipe slow" in repo.log_text()
            and any(day_dir.glob(".leads.parquet.*.tmp"))
        ),
        what="the query to run",
    )
    os.killpg(killed.pid, signal.SIGKILL)
    left = list(day_dir.glob(".leads.parquet.*.tmp"))
    assert left
    killed.communicate(timeout=30)
    assert not repo.copy.marker("slow", repo.today).exists(), "no marker without complete data"
    assert any((repo.root / ".snakemake" / "locks").glob("*.lock"))  # what the kill leaves

    (folder / "redshift.sql").write_text("SELECT lead_id FROM leads ORDER BY lead_id LIMIT 7\n")
    result = repo.cron("slow")

    assert result.returncode == 0, repo.log_text()[-5000:]
    assert (
        "lead-recovery: removed the Snakemake lock a killed run left in this checkout "
        "(no run holds it now)"
    ) in repo.log_text()
    assert repo.summary(result.pid)[("slow", repo.today)]["status"] == "queried"
    record = json.loads(repo.copy.marker("slow", repo.today).read_text())
    assert record["rows"] == 7
    assert pq.read_metadata(repo.copy.leads("slow", repo.today)).num_rows == 7
    assert not [p for p in left if p.exists()], "the next extract job removed them"
    assert not [p.name for p in day_dir.rglob("*.tmp")]


def test_killing_cron_alone_lets_snakemake_finish_and_the_next_run_waits(cron_repo):
    """SIGKILL to cron.py only: Snakemake is told to stop (SIGTERM), finishes its
    running job, and the next run waits for it and finds the day cached."""
    repo = cron_repo
    name = repo.add_held()
    killed = repo.start(name, new_session=True)
    analyze_log = repo.root / "logs" / name / repo.today / "analyze.log"
    repo.wait_for(analyze_log.exists, what="the analysis to start")
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=30)

    after = repo.start(name)
    repo.wait_for(lambda: repo.waiting() == 1, what="the next run to wait for Snakemake")
    repo.release()
    result = repo.finish(after)

    assert result.returncode == 0, repo.log_text()[-5000:]
    assert repo.summary(result.pid)[(name, repo.today)]["status"] == "cached"
    assert repo.queries() == 1
    assert repo.log_text().count("rule analyze:") == 1, "the killed run's analysis completed"
    assert repo.copy.analysis(name, repo.today).exists()
    assert "LockException" not in repo.log_text()


def test_since_runs_every_missed_day_with_its_own_marker(cron_repo):
    """The catch-up's days: tests/unit/test_cli_decisions.py; each day decided on its own
    marker (a catch-up over days already done finds them cached): tests/unit/test_plan.py's
    rows, and cron's "cached" line after a second run: test_make_cron_twice_in_one_day."""
    repo = cron_repo
    days = [_days_before(repo.today, n) for n in (1, 0)]

    result = repo.cron("--since", days[0], repo.sql_recipe)

    assert result.returncode == 0, repo.log_text()[-5000:]
    summary = repo.summary(result.pid)
    assert sorted(summary) == [(repo.sql_recipe, d) for d in days]
    assert {row["status"] for row in summary.values()} == {"queried"}
    for day in days:
        record = json.loads(repo.copy.marker(repo.sql_recipe, day).read_text())
        assert record["run_date"] == day
    assert repo.queries() == 2


def test_bad_arguments_are_one_line_and_exit_2(cron_repo):
    result = cron_repo.cron("--since", "20250599")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lead-recovery cron: error: date '20250599' is not a real calendar date"
    ]
    unknown = cron_repo.cron("no_such_recipe")
    assert unknown.returncode == 2 and "unknown recipe 'no_such_recipe'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    bare_seconds = cron_repo.cron("--wait", "90")
    assert bare_seconds.returncode == 2
    assert bare_seconds.stderr.strip().splitlines() == [
        "lead-recovery cron: error: wait '90' is not a duration such as 6h, 30m or 90s"
    ]
    assert not cron_repo.log().exists(), "bad input runs nothing and logs nothing"
