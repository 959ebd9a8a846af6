"""The S3 store against a real S3 API: moto's server, the stand-in for AWS.

Nothing else is mocked: the real workflow runs in real Snakemake on the duckdb
demo warehouse; its extract jobs, the end of each run and the ``markers`` helper
read and write the store through lead_recovery/store.py, which reaches the
server only through the standard AWS settings (``AWS_ENDPOINT_URL``, the access
keys, ``AWS_REGION``). Snakemake itself never talks to S3: its outputs are the
checkout's own copies. One server per test worker; each test gets its own
bucket, so tests never see each other's objects.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from lead_recovery import layout, markers
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
        """The day's committed marker in the store."""
        return self.key(markers.marker_path(layout.MARKERS, recipe, day))

    def marker(self, recipe: str = SQL, day: str = DAY) -> dict | None:
        """The day's committed marker's record, ``None`` if there is none."""
        data = self.get(self.marker_key(recipe, day))
        return None if data is None else json.loads(data)

    def extract_key(self, recipe: str = SQL, day: str = DAY) -> str | None:
        """The key of the extract the day's marker names (``None``: no marker)."""
        record = self.marker(recipe, day)
        return None if record is None else self.key(record["extract"])

    def extract_keys(self, recipe: str = SQL, day: str = DAY) -> list[str]:
        """Every query's extract of the day in the store (each written once)."""
        return self.objects(f"{recipe}/{day}/{layout.EXTRACTS}/")

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

    def downloads(self, key: str, since: int = 0) -> int:
        """How many times the bytes of ``key`` were sent from the server (GETs of it)."""
        return sum(r["method"] == "GET" and r["key"] == key for r in self.requests()[since:])

    def not_ours(self, since: int = 0) -> list[dict]:
        """Requests (from number ``since`` on) that lead_recovery/store.py's client never
        makes: anything but ListObjectsV2 and object reads, writes and deletes of keys
        in the store's layout (Snakemake's S3 storage plugin listed with ListObjects v1,
        HEAD the bucket, copied server-side and wrote ``<prefix>/results/...``). The
        test's own bucket creation is not counted."""
        layout_key = re.compile(
            rf"^{re.escape(self.key(''))}(?:\.lead-recovery-store|markers/.+|"
            r"[^/]+/\d{8}/(?:extracts/[^/]+\.parquet|suspect\.parquet))$"
        )
        found = []
        for r in self.requests()[since:]:
            if not r["key"]:
                listing = r["method"] == "GET" and "list-type=2" in r["query"]
                ok = listing or (r["method"] == "PUT" and not r["query"])  # create_bucket
            else:
                ok = bool(layout_key.match(r["key"])) and not r["copy"]
            if not ok:
                found.append(r)
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
