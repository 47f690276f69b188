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

    from tests import s3server

    saved = {k: os.environ.get(k) for k in s3server.AWS_VARIABLES}
    server, url = s3server.start()
    yield url
    server.terminate()
    server.wait(10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_root(s3_endpoint: str) -> str:
    """``s3://<a fresh bucket>/runs`` on the test endpoint."""
    import uuid

    from store.location import filesystem

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    filesystem("s3").mkdir(bucket)
    return f"s3://{bucket}/runs"
