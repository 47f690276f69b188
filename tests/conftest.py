"""Fixtures shared across the suite's packages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark(s3_endpoint: str) -> Iterator[SparkSession]:
    """One local Spark session (2 cores) for the whole test run: a JVM takes ~10 s to
    start. Made by the first test that asks for it; after the S3 endpoint, so that its
    executors inherit the AWS variables (stores on S3 are read there too)."""
    from analysis.spark import local_session

    session = local_session(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.ui.enabled": "false",
            "spark.sql.session.timeZone": "UTC",
        },
        app="telemetry-tests",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 endpoint on 127.0.0.1 (moto's server) for the whole test run, and the
    standard AWS variables pointing at it; its URL. Never a real endpoint."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto's S3 server did not start on {url}") from None
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in _AWS}
    os.environ.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=url,
    )
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    yield url
    server.terminate()
    server.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


_AWS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)


@pytest.fixture
def s3_root(s3_endpoint: str) -> str:
    """``s3://<a fresh bucket>/runs`` on the test endpoint."""
    import uuid

    from store.location import filesystem

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/runs"
