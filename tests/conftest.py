"""Fixtures shared across the suite's packages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local Spark session (2 cores) for the whole test run: a JVM takes ~10 s to
    start. Made by the first test that asks for it."""
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
