"""The SQL the report runs over a store's views, one file a query (``reports.data``
runs them, one run at a time). Comments at the top of a file say what it reads and why."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def query(name: str) -> str:
    """The text of ``<name>.sql``."""
    return resources.files(__name__).joinpath(f"{name}.sql").read_text()
