"""AWS credentials never reach what the S3 store's paths print or write, at any level.

Every path that talks to the store, with sentinel credentials (moto's server takes
any): a first run (a query, its extract and marker uploaded), a cached run, a run in
a second checkout (its copy downloaded from the store), ``markers list``, ``delete``
and ``create``, ``report --json`` and ``doctor`` (its probe object and the store's
clock); the extract jobs log at DEBUG, as they always do. Then everything they
printed, every file under both checkouts (results/, logs/, .snakemake/) and every
object in the bucket is searched for each sentinel and for a signed request's shapes
(an ``Authorization`` header, ``x-amz-security-token``, a signature). The UNLOAD
path: tests/redshift/test_aws_logging.py.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import workflow_with_warehouse
from tests.s3.conftest import DAY, SQL, OnS3
from tests.support.workflow import clean_env

# What a signed request looks like unredacted (aws.py leaves "***" in their place).
SHAPES = (
    re.compile(rb"(?i)authorization['\"]?\s*[:=]\s*b?['\"]?(?!\*\*\*)[A-Za-z0-9]"),
    re.compile(rb"(?i)x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?(?!\*\*\*)[A-Za-z0-9]"),
    re.compile(rb"(?i)x-amz-(?:signature|credential)=(?!\*\*\*)[A-Za-z0-9]"),
    re.compile(rb"Signature=[0-9a-f]{64}"),
)


def sentinels() -> dict[str, str]:
    """Credentials no run could print by chance, by environment variable."""
    return {
        "AWS_ACCESS_KEY_ID": f"ASIASENTINEL{secrets.token_hex(6).upper()}",
        "AWS_SECRET_ACCESS_KEY": f"sentinel-secret-{secrets.token_hex(12)}",
        "AWS_SESSION_TOKEN": f"sentinel-token-{secrets.token_hex(16)}",
    }


def leaks(data: bytes, values: dict[str, str]) -> list[str]:
    found = [name for name, value in values.items() if value.encode() in data]
    return found + [shape.pattern.decode() for shape in SHAPES if shape.search(data)]


def test_no_credential_in_anything_the_s3_paths_print_or_write(
    on_s3: OnS3, tmp_path: Path, demo_warehouse_file: Path
):
    secret = sentinels()
    assert leaks(f"x-amz-security-token:{secret['AWS_SESSION_TOKEN']}".encode(), secret) == [
        "AWS_SESSION_TOKEN",
        SHAPES[1].pattern.decode(),
    ]  # the search finds what it looks for
    second = OnS3(
        workflow_with_warehouse(tmp_path / "second", demo_warehouse_file),
        on_s3.server,
        on_s3.bucket,
    )
    printed: list[str] = []

    first = on_s3.run(config={"date": DAY}, env=secret)
    cached = on_s3.run(config={"date": DAY}, env=secret)
    copied = second.run(config={"date": DAY}, env=secret)
    printed += [first.output, cached.output, copied.output]
    assert (first.queries, cached.queries, copied.queries) == (1, 0, 0)
    assert copied.jobs["redshift_extract"] == 1  # its copy came from the store
    for args in (
        ("list", "--json"),
        ("delete", SQL, "--date", DAY),
        ("create", SQL, "--date", DAY),
        ("list", "--refresh"),
    ):
        done = on_s3.markers(*args, env=secret)
        assert done.returncode == 0, done.stderr
        printed += [done.stdout, done.stderr]
    said = {}
    for command in ("report", "doctor"):  # the history; the store's probe and clock
        done = subprocess.run(
            [sys.executable, "-m", "lead_recovery.cli.main", command, "--json"],
            cwd=on_s3.root,
            env=clean_env(**{**on_s3.server.env, **secret}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        said[command] = json.loads(done.stdout)
        printed += [done.stdout, done.stderr]
    assert said["report"]["total"]["queries"] == 1
    assert any(c["name"] == "store" and c["ok"] for c in said["doctor"]), said["doctor"]

    assert leaks("\n".join(printed).encode(), secret) == []
    # the query's job log (its root logger at DEBUG: without aws.configure_logging this
    # test finds every sentinel there) names the upload
    job_log = on_s3.root / "logs" / SQL / DAY / "redshift_extract.log"
    assert f"extract {on_s3.url}/{SQL}/{DAY}/extracts/" in job_log.read_text()
    files = [
        path
        for checkout in (on_s3.root, second.root)
        for folder in ("results", "logs", ".snakemake")
        for path in (checkout / folder).rglob("*")
        if path.is_file() and not path.is_symlink()
    ]
    assert any(p.name.endswith(".jsonl") or p.suffix == ".json" for p in files)
    for path in files:
        assert leaks(path.read_bytes(), secret) == [], path
    keys = on_s3.objects("")
    assert any(k.endswith(".parquet") for k in keys) and any(".history/" in k for k in keys)
    for key in keys:
        data = on_s3.get(key) or b""
        if key.endswith(".gz"):  # the marker index
            data = gzip.decompress(data)
        assert leaks(data, secret) == [], key
