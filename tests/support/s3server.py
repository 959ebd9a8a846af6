"""A throw-away S3-compatible server: ``moto_server`` on a free loopback port.

Used by the UNLOAD tests, the S3 store tests and the benchmarks: the shim's
UNLOAD emulation writes Parquet parts and a manifest there, and the extract
reads them with boto3, both pointed at it by ``AWS_ENDPOINT_URL`` (boto3
honours it). The credentials are dummies that moto accepts; nothing here
reaches AWS.

With ``request_log`` the server is moto's own WSGI application behind a thin
layer that appends one JSON line per request it receives: what a test needs
to count uploads or see the signing region *at the server*, whatever process
sent them. Only the method, path, query, whether it is a server-side copy,
the body's size and the region of the signature's scope are written: never a
header value that identifies a credential, never a body.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.redshift_shim import stop_process

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``with S3Server() as s3: s3.env`` is the environment that points boto3 at it."""

    def __init__(
        self,
        region: str = "us-east-1",
        server_env: dict[str, str] | None = None,
        request_log: Path | None = None,
    ) -> None:
        """``server_env``: moto's own settings, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT`` to
        check credentials and IAM policies after that many requests. ``request_log``:
        a file the server appends one line per request to (see :meth:`requests`)."""
        self.region = region
        self.server_env = server_env or {}
        self.request_log = request_log
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "lr-test-access-key",
            "AWS_SECRET_ACCESS_KEY": "lr-test-secret-key-never-logged",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def start(self) -> S3Server:
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe)] if exe.exists() else [shutil.which("moto_server") or "moto_server"]
        env = {**os.environ, **self.server_env}
        if self.request_log is not None:
            cmd = [sys.executable, "-m", "tests.support.s3server", "--request-log"]
            cmd.append(str(self.request_log))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        last = None
        for _ in range(5):
            self.port = _free_port()
            self._proc = subprocess.Popen(
                [*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self._proc.poll() is None:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
                ):
                    return self
                time.sleep(0.1)
            last = self._proc.poll()
            self.stop()
        raise RuntimeError(f"moto_server did not start (exit {last})")

    def client(self):
        import boto3

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def requests(self, bucket: str | None = None) -> list[dict]:
        """The requests the server received so far (``request_log``), oldest first;
        with ``bucket``, only those for that bucket (``key`` is the object's key)."""
        assert self.request_log is not None, "S3Server(request_log=...) records requests"
        if not self.request_log.exists():
            return []
        found = []
        for line in self.request_log.read_text().splitlines():
            entry = json.loads(line)
            head, _, key = entry["path"].lstrip("/").partition("/")
            if bucket is None or head == bucket:
                found.append({**entry, "bucket": head, "key": key})
        return found

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
        self._proc = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signing_region(authorization: str) -> str | None:
    """The region of a SigV4 ``Authorization`` header's scope
    (``Credential=<key id>/<date>/<region>/s3/aws4_request``); the key id is dropped."""
    _, found, scope = authorization.partition("Credential=")
    parts = scope.split(",", 1)[0].split("/")
    return parts[2] if found and len(parts) >= 5 else None


def serve(host: str, port: int, request_log: Path) -> None:
    """moto's server application, with every request noted in ``request_log``."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def noted(environ: dict, start_response):
        entry = {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "copy": "HTTP_X_AMZ_COPY_SOURCE" in environ,
            "bytes": int(environ.get("CONTENT_LENGTH") or 0),
            "region": _signing_region(environ.get("HTTP_AUTHORIZATION", "")),
        }
        with lock, open(request_log, "a") as log:
            log.write(json.dumps(entry) + "\n")
        return app(environ, start_response)

    run_simple(host, port, noted, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__" and "--request-log" in sys.argv:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--request-log", type=Path, required=True)
    given = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        serve(given.host, given.port, given.request_log)
elif __name__ == "__main__":
    with S3Server() as server:
        for key, value in server.env.items():
            print(f"export {key}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    os._exit(0)
