"""AWS credentials never reach a log, at any level, on the UNLOAD path.

S3 here is a local moto server (``AWS_ENDPOINT_URL``), which accepts any
credentials: the ones below are unique sentinel strings, so finding one in a
log line or a written file is a leak, whatever shape it took (an
``Authorization`` header, ``x-amz-security-token:...`` in a canonical
request, a dict repr). UNLOAD itself is the shim's emulation, not Redshift.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from pathlib import Path

import pytest
import yaml

from lead_recovery import aws
from lead_recovery.extract import query_tag
from tests.redshift.conftest import UNLOAD_BUCKET
from tests.redshift.test_workflow_redshift import META, RECIPE, SQL

PARAMS = {"run_date": dt.date(2025, 5, 12)}
ROLE = "arn:aws:iam::123456789012:role/lead-recovery-unload"


@pytest.fixture
def sentinels(aws_env, monkeypatch) -> dict[str, str]:
    """Unique credentials in the environment (moto takes any); returned by variable."""
    values = {
        "AWS_ACCESS_KEY_ID": f"SENTINELAKID{secrets.token_hex(6).upper()}",
        "AWS_SECRET_ACCESS_KEY": f"sentinel-secret-{secrets.token_hex(12)}",
        "AWS_SESSION_TOKEN": f"sentinel-token-{secrets.token_hex(16)}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def leaks(text: str, values: dict[str, str]) -> list[str]:
    found = [name for name, value in values.items() if value in text]
    # a signature is 64 hex digits after "Signature="; a redacted one is ***
    if re.search(r"Signature=[0-9a-f]{64}", text):
        found.append("a request signature")
    return found


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_unload_at_debug_logs_no_credential(
    limited_shim, make_warehouse, sentinels, s3_server, tmp_path, caplog
):
    limited_shim(unload=True, unload_slices=2)
    log_file = tmp_path / "job.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):  # the root logger: every library's records
            warehouse = make_warehouse(
                extract="unload",
                unload={"s3_prefix": f"s3://{UNLOAD_BUCKET}/sentinel", "iam_role": ROLE},
            )
            table = warehouse.stream(
                "SELECT lead_id FROM leads", PARAMS, tag=query_tag("sentinel", "20250512")
            ).read_all()
            # a client made directly, as the store will make its own
            aws.client("s3").list_objects_v2(Bucket=UNLOAD_BUCKET, MaxKeys=1)
    finally:
        root.removeHandler(handler)
        handler.close()
    assert table.num_rows == 500
    assert any(r.name.startswith("lead_recovery") for r in caplog.records)  # it did log
    assert leaks(caplog.text, sentinels) == []
    for path in files_under(tmp_path):
        assert leaks(path.read_text(errors="replace"), sentinels) == [], path


def test_redact_covers_the_shapes_botocore_logs(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    lines = [
        "Sending http request: <AWSPreparedRequest headers={'Authorization': b'AWS4-HMAC-SHA256 "
        "Credential=AKIAIOSFODNN7EXAMPLE/20250512/eu-west-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=" + "ab" * 32 + "', 'X-Amz-Security-Token': b'FQoGZXIv'}>",
        "CanonicalRequest:\nGET\n/\n\nhost:s3\nx-amz-security-token:FQoGZXIvYXdzEXAMPLE\n",
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=ASIAEXAMPLEEXAMPLE12&X-Amz-Signature=abc123",
        "Response body: b'<DbUser>IAM:bot</DbUser><DbPassword>p4ss-w0rd</DbPassword>'",
        "{'dbUser': 'IAMR:bot', 'dbPassword': 'p4ss-w0rd'}",
        "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY in a message",
    ]
    for line in lines:
        redacted = aws.redact(line)
        for secret in (
            "AKIAIOSFODNN7EXAMPLE",
            "ab" * 32,
            "FQoGZXIv",
            "ASIAEXAMPLEEXAMPLE12",
            "abc123",
            "p4ss-w0rd",
            "wJalrXUtnFEMI",
        ):
            assert secret not in redacted, (line, redacted)


def test_workflow_job_logs_hold_no_credential(
    bare_workflow, pg_server, limited_shim, sentinels, s3_server
):
    """The real workflow at its jobs' DEBUG level: every file the run wrote, and its output."""
    shim = limited_shim(unload=True)
    bare_workflow.add_recipe(RECIPE, sql=SQL, meta=META)
    config_file = bare_workflow.root / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["redshift"] = {
        "extract": "unload",
        "unload": {"s3_prefix": f"s3://{UNLOAD_BUCKET}/sentinel-wf", "iam_role": ROLE},
    }
    config_file.write_text(yaml.safe_dump(config))
    env = {**pg_server.env(shim.port), **s3_server.env, **sentinels}
    result = bare_workflow.run(
        config={"warehouse": "redshift", "recipe": RECIPE, "date": "20250512"}, env=env
    )
    job_logs = [p for p in files_under(bare_workflow.root / "logs") if p.suffix == ".log"]
    assert any("UNLOAD" in p.read_text() for p in job_logs)  # the UNLOAD job's log is there
    assert leaks(result.output, sentinels) == []
    for path in files_under(bare_workflow.root):
        if ".git" in path.parts:
            continue
        assert leaks(path.read_text(errors="replace"), sentinels) == [], path
