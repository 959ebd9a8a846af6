"""The S3 store against a real S3 API: moto's server, the stand-in for AWS.

Nothing else is mocked: the real workflow runs in real Snakemake (with its
S3 storage plugin), on the duckdb demo warehouse, and reaches the server only
through the standard AWS settings (``AWS_ENDPOINT_URL``, the access keys,
``AWS_REGION``). One server per test module and worker; each test gets its
own bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from tests.support.s3server import S3Server
from tests.support.workflow import RunResult, WorkflowCopy, clean_env

DAY = "20261127"
SQL = "simulation_to_handoff"
_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One server per test worker (each test has its own bucket); it notes every request
    (``on_s3.requests()``)."""
    log = tmp_path_factory.mktemp("s3server") / "requests.jsonl"
    with S3Server(request_log=log) as server:
        yield server


class OnS3:
    """A workflow copy whose config says ``store: s3://<bucket>/team``."""

    def __init__(self, workflow: WorkflowCopy, server: S3Server, bucket: str) -> None:
        self.wf, self.server, self.bucket = workflow, server, bucket
        self.url = f"s3://{bucket}/team"
        config_file = workflow.root / "config/config.yaml"
        config = yaml.safe_load(config_file.read_text())
        config["store"] = self.url
        config_file.write_text(yaml.safe_dump(config))

    @property
    def root(self) -> Path:
        return self.wf.root

    def run(self, *args: str, env: dict | None = None, **kw) -> RunResult:
        return self.wf.run(*args, env={**self.server.env, **(env or {})}, **kw)

    def key(self, path: str) -> str:
        return f"team/{path}"

    def marker_key(self, recipe: str = SQL, day: str = DAY) -> str:
        return self.key(f"results/markers/redshift_queried_{recipe}_{day}.marker")

    def leads_key(self, recipe: str = SQL, day: str = DAY) -> str:
        return self.key(f"results/{recipe}/{day}/leads.parquet")

    def get(self, key: str) -> bytes | None:
        client = self.server.client()
        try:
            return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    def objects(self, under: str = "") -> list[str]:
        return self.server.keys(self.bucket, self.key(under))

    def requests(self) -> list[dict]:
        """The requests the server received for this bucket so far, oldest first."""
        return self.server.requests(self.bucket)

    def uploads(self, since: int = 0, suffix: str = ".parquet") -> list[str]:
        """Keys whose bytes were sent to the server, once per upload (a ``PutObject``, or
        the start of a multipart upload; never a server-side copy), among the requests
        from number ``since`` on."""
        found = []
        for r in self.requests()[since:]:
            query = parse_qs(r["query"], keep_blank_values=True)
            put = r["method"] == "PUT" and not r["copy"] and "partNumber" not in query
            multipart = r["method"] == "POST" and "uploads" in query
            if (put or multipart) and r["key"].endswith(suffix):
                found.append(r["key"])
        return found

    def delete(self, key: str) -> None:
        self.server.client().delete_object(Bucket=self.bucket, Key=key)

    def markers(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        """``lead-recovery markers ARGS`` in this checkout, as a user runs it."""
        return subprocess.run(
            [sys.executable, "-m", "lead_recovery.cli.markers", *args],
            cwd=self.root,
            env=clean_env(**{**self.server.env, **(env or {})}),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def markers_json(self, *args: str) -> list[dict]:
        done = self.markers("list", "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def on_s3(workflow: WorkflowCopy, s3_server: S3Server) -> OnS3:
    bucket = f"lr-{os.getpid()}-{next(_buckets)}"
    s3_server.client().create_bucket(Bucket=bucket)
    return OnS3(workflow, s3_server, bucket)


def account(output: str) -> list[str]:
    """The end-of-run account's lines (after its heading)."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if "what this run did" in line)
    return lines[start + 1 :]
