"""Query results out of the CLI: an aligned text table, CSV, JSON or Parquet.

``telemetry query`` and ``telemetry runs`` print a Polars DataFrame in the format the
user asks for, to stdout or to ``-o FILE``. The table is for people (long text cut,
floats to 6 significant digits); CSV, JSON and Parquet carry every value as it is,
except what a format cannot hold: in CSV and JSON, binary cells (``samples.data``) are
base64 text and list cells are JSON text; in JSON, NaN and +-Inf are the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (strict JSON has no such numbers).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import polars as pl

FORMATS = ("table", "csv", "json", "parquet")
CELL_WIDTH = 48
"""Longest cell of a table (config JSON, event payloads): the rest is cut with '...'."""


class OutputProblem(click.ClickException):
    exit_code = 2


def format_option(formats: tuple[str, ...] = FORMATS) -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(formats),
        default="table",
        show_default=True,
        help="table for people; csv, json (a list of row objects)"
        + (", parquet (needs -o)" if "parquet" in formats else "")
        + " for programs.",
    )


output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write the result to FILE instead of printing it.",
)


def emit(df: pl.DataFrame, fmt: str, output: Path | None, *, quiet: bool = False) -> None:
    """Print ``df`` in ``fmt``, or write it to ``output`` (and say so on stderr)."""
    if fmt == "parquet":
        if output is None:
            raise OutputProblem("--format parquet writes a binary file: give -o FILE")
        _write(output, lambda: df.write_parquet(output))
    else:
        text = render(df, fmt)
        if output is None:
            click.echo(text, nl=not text.endswith("\n"))
            return
        write_text(text, output)
    if not quiet:
        click.echo(f"wrote {len(df)} row(s) to {output}", err=True)


def write_text(text: str, output: Path) -> None:
    """``text`` (newline-terminated) into ``output``; a failure is an ``OutputProblem``."""
    _write(output, lambda: output.write_text(text if text.endswith("\n") else text + "\n"))


def _write(path: Path, write: Any) -> None:
    try:
        write()
    except OSError as e:
        raise OutputProblem(f"cannot write {str(path)!r}: {e.strerror or e}") from e


def render(df: pl.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return _plain(df).write_csv()
    if fmt == "json":
        rows = [{k: _json_value(v) for k, v in row.items()} for row in df.iter_rows(named=True)]
        return json.dumps(rows, indent=2, allow_nan=False)
    if fmt == "table":
        return table(df)
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def table(df: pl.DataFrame) -> str:
    """Columns aligned under their names, numbers to the right; '(no rows)' when empty."""
    names = df.columns
    numeric = [df.schema[c].is_numeric() for c in names]
    cells = [[_cell(v) for v in row] for row in df.iter_rows()]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(names), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    if df.is_empty():
        out.append("(no rows)")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    text = str(value).replace("\n", " ")
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."


def _plain(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with binary and nested columns as text (CSV holds neither)."""
    import polars as pl

    out = []
    for name, dtype in df.schema.items():
        if dtype == pl.Binary or dtype.is_nested():
            values = [_text(v) for v in df[name].to_list()]
            out.append(pl.Series(name, values, dtype=pl.String))
        else:
            out.append(df[name])
    return pl.DataFrame(out)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return json.dumps(_json_value(value), allow_nan=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # Decimal, UUID...
