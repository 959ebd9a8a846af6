"""``lead-recovery doctor`` on an S3 store: moto's server (tests/s3/conftest.py), the
command in-process (tests/support/doctor.py). The demo warehouse is not built here, so
its line is ``unknown``, which is not a failure."""

from __future__ import annotations

import itertools
import os
import socket
import urllib.request

import pytest

from tests.support.doctor import SENTINELS, doctor, doctor_repo

_buckets = itertools.count()


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"lr-doctor-{os.getpid()}-{next(_buckets)}"
    s3_server.client().create_bucket(Bucket=name)
    return name


def test_the_store_is_probed_and_left_as_it_was(tmp_path, s3_server, bucket):
    repo = doctor_repo(tmp_path / "repo", store=f"s3://{bucket}/team")
    done = doctor(repo, env=s3_server.env)
    assert done.code == 0, done.out + done.err
    assert done.lines["store"] == (
        f"[ok] store: s3://{bucket}/team: writable (a probe object written, replaced and deleted)"
    )
    assert done.lines["store conditional writes"] == (
        "[ok] store conditional writes: a stale version and a second creation refused, "
        "the current version accepted"
    )
    assert done.lines["store clock"].startswith("[ok] store clock: ")
    assert "(S3's Date header counts whole seconds)" in done.lines["store clock"]
    assert s3_server.keys(bucket) == []
    touched = {r["key"] for r in s3_server.requests(bucket)} - {""}  # "": create_bucket
    assert touched and all(k.startswith("team/markers/.leases/.doctor/") for k in touched)


def test_a_bucket_that_does_not_exist_is_one_line(tmp_path, s3_server):
    repo = doctor_repo(tmp_path / "repo", store="s3://lr-doctor-no-such-bucket/team")
    done = doctor(repo, env=s3_server.env)
    assert done.code == 1
    assert done.lines["store"] == (
        "[FAILED] store: s3://lr-doctor-no-such-bucket/team: no such bucket "
        "'lr-doctor-no-such-bucket'; create the bucket, or correct store: in config/config.yaml"
    )
    assert done.lines["store conditional writes"].startswith("[unknown]")
    assert done.lines["store clock"].startswith("[unknown]")
    assert done.err == "lead-recovery doctor: 1 of 7 checks failed: store\n"


def test_rejected_credentials_are_one_line_and_no_secret_is_shown(tmp_path, s3_server, bucket):
    """The server checks credentials for the length of the test (moto's reset-auth); the
    store, the UNLOAD prefix and Redshift (a closed port) are all tried with sentinels."""
    unload = {"extract": "unload", "unload": {"s3_prefix": f"s3://{bucket}/unload"}}
    repo = doctor_repo(tmp_path / "repo", store=f"s3://{bucket}/team", warehouse="redshift")
    config = repo / "config/config.yaml"
    config.write_text(config.read_text() + f"redshift: {unload}\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **s3_server.env,
        "AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000",
        **SENTINELS,
        **{"REDSHIFT_HOST": "127.0.0.1", "REDSHIFT_PORT": str(port), "REDSHIFT_SSL": "false"},
        **{"REDSHIFT_DATABASE": "analytics", "REDSHIFT_USER": "lead_recovery"},
    }
    auth(s3_server, "0")
    try:
        done = doctor(repo, "--timeout", "2", env=env)
    finally:
        auth(s3_server, "inf")
    assert done.code == 1
    assert done.lines["store"] == (
        f"[FAILED] store: s3://{bucket}/team: the AWS credentials were rejected "
        "(InvalidAccessKeyId); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    )
    assert done.lines["connection"].startswith("[FAILED] connection: cannot connect")
    assert done.lines["unload s3_prefix"].startswith("[FAILED] unload s3_prefix: ")
    for value in SENTINELS.values():
        assert value not in done.out + done.err


def auth(server, count: str) -> None:
    """Check credentials after ``count`` more requests (``inf``: never), server-wide."""
    request = urllib.request.Request(
        f"{server.endpoint}/moto-api/reset-auth",
        data=count.encode(),
        headers={"Content-Type": "application/octet-stream"},  # not a form: the body is read
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
