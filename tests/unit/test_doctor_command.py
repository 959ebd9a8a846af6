"""``lead-recovery doctor`` on a folder store: in-process (tests/support/doctor.py), on a
copy of the workflow's config, schemas and recipes with a 200-row demo warehouse.

The Redshift connection's own lines are tested against a real server in
tests/redshift/test_doctor.py; here only that doctor shows them (a closed port),
and that no credential reaches its output. The S3 store: tests/s3/test_doctor_on_s3.py.
"""

from __future__ import annotations

import json
import socket

import pytest

from lead_recovery import config as lr_config
from lead_recovery.warehouse import demo
from tests.support.doctor import SENTINELS, doctor, doctor_repo
from tests.support.workflow import DEMO_DB, REPO

NAMES = ["config", "recipes", "store", "store conditional writes", "store clock"]


@pytest.fixture
def repo(tmp_path):
    root = doctor_repo(tmp_path / "repo")
    demo.build(root / DEMO_DB, 200, lr_config.load(REPO)["duckdb"]["seed"])
    return root


def test_the_demo_checkout_passes_and_writes_nothing_but_its_probe(repo):
    done = doctor(repo)
    assert done.code == 0, done.out + done.err
    assert list(done.lines) == [*NAMES, "warehouse", "demo file"]
    assert all(line.startswith("[ok] ") for line in done.out.splitlines()), done.out
    assert done.lines["store"].endswith(
        "(this checkout's results_dir): writable (a probe object written, replaced and deleted)"
    )
    assert done.lines["demo file"].endswith("results/warehouse/demo.duckdb: 200 leads")
    assert done.err == "lead-recovery doctor: no check failed (7 checks, 0 unknown)\n"
    results = repo / "results"
    written = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    # the folder lock put_if takes, and the file store.clock() stamps: no marker, no extract
    assert written[:2] == ["markers/.leases/.clock", "markers/.leases/.doctor/.lock"]
    assert written[2:] == ["warehouse/demo.duckdb"]

    as_json = json.loads(doctor(repo, "--json").out)
    assert [(c["name"], c["ok"]) for c in as_json] == [(n, True) for n in done.lines]


def test_a_broken_recipe_is_named_with_its_file(repo):
    broken = repo / "recipes/broken"
    broken.mkdir()
    (broken / "meta.yml").write_text("output_columns: [lead_id]\n")
    (broken / "redshift.sql").write_text("SELECT lead_id\nFORM leads\n")
    done = doctor(repo)
    assert done.code == 1
    assert done.lines["recipe broken"] == (
        "[FAILED] recipe broken: recipes/broken/redshift.sql:2:6: syntax error near 'leads'"
    )
    assert "recipes" not in done.lines and done.lines["store"].startswith("[ok]")
    assert done.err == "lead-recovery doctor: 1 of 7 checks failed: recipe broken\n"


def test_a_config_that_cannot_be_read_is_exit_2_one_that_does_not_match_is_one_line(repo):
    config = repo / "config/config.yaml"
    config.write_text("warehouse: [duckdb\n")
    done = doctor(repo)
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith("lead-recovery: error: config file is not valid YAML at line 2")

    config.write_text("warehouse: oracle\n")
    done = doctor(repo)
    assert done.code == 1
    assert done.out == (
        "[FAILED] config: config/config.yaml: warehouse: 'oracle' is not one of "
        "['duckdb', 'redshift'] (every key: config/README.md)\n"
    )


def test_redshift_settings_missing_is_one_line(repo):
    (repo / "config/config.yaml").write_text("warehouse: redshift\n")
    done = doctor(repo)
    assert done.code == 1
    assert list(done.lines) == [*NAMES, "settings"]
    assert done.lines["settings"] == (
        "[FAILED] settings: Redshift connection settings missing for password authentication: "
        "set REDSHIFT_HOST, REDSHIFT_DATABASE, REDSHIFT_USER, REDSHIFT_PASSWORD in the "
        f"environment or in {repo}/.env (not found)"
    )


def test_an_unreachable_redshift_fails_in_one_line_and_no_secret_is_shown(repo):
    (repo / "config/config.yaml").write_text("warehouse: redshift\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "REDSHIFT_HOST": "127.0.0.1",
        "REDSHIFT_PORT": str(port),
        "REDSHIFT_DATABASE": "analytics",
        "REDSHIFT_USER": "lead_recovery",
        "REDSHIFT_SSL": "false",
        **SENTINELS,
    }
    done = doctor(repo, "--timeout", "2", env=env)
    assert done.code == 1
    assert list(done.lines) == [
        *NAMES,
        *["settings", "connection", "authentication", "tls", "single node"],
    ]
    assert done.lines["connection"].startswith(
        f"[FAILED] connection: cannot connect to Redshift at 127.0.0.1:{port}: connection refused"
    )
    assert done.lines["authentication"] == "[unknown] authentication: password; not reached"
    as_json = doctor(repo, "--json", "--timeout", "2", env=env)
    for output in (done.out, done.err, as_json.out, as_json.err):
        for value in SENTINELS.values():
            assert value not in output
