"""A throw-away S3-compatible server: ``moto_server`` on a free loopback port.

Used by the UNLOAD tests and the benchmark: the shim's UNLOAD emulation
writes Parquet parts and a manifest there, and the extract reads them with
boto3, both pointed at it by ``AWS_ENDPOINT_URL`` (boto3 honours it). The
credentials are dummies that moto accepts; nothing here reaches AWS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.redshift_shim import stop_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``with S3Server() as s3: s3.env`` is the environment that points boto3 at it."""

    def __init__(self, region: str = "us-east-1", server_env: dict[str, str] | None = None) -> None:
        """``server_env``: moto's own settings, e.g. ``INITIAL_NO_AUTH_ACTION_COUNT`` to
        check credentials and IAM policies after that many requests."""
        self.region = region
        self.server_env = server_env or {}
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
        last = None
        for _ in range(5):
            self.port = _free_port()
            self._proc = subprocess.Popen(
                [*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                env={**os.environ, **self.server_env},
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

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
        self._proc = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    with S3Server() as server:
        for key, value in server.env.items():
            print(f"export {key}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    os._exit(0)
