"""``telemetry runs ROOT``: the runs of a store as a table, filtered and sorted.

One row per run: id, name, status, steps, duration, the best value of each metric
that has a goal (the ``metric_goals`` view: ``tel.define_metric()``, else the name's
words, ``store.metrics``; ``best_loss_val`` is the lowest validation loss,
``best_acc_val`` the highest validation accuracy, ``best_bpc_val`` the lowest
bits-per-character), the config (JSON text) and the start time.

``--where`` takes one SQL expression over those columns, and ``config.KEY`` (or
``config.a.b`` for nested keys) for a value of the config: typed from the runs'
configs (numbers compare as numbers, strings as strings). The expression is parsed
as an expression, never pasted into a statement, and runs on a locked store
(``Store.lock``): it can only read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from telemetry import common
from telemetry.common import QueryError, StoreProblem
from telemetry.output import emit, format_option, output_option, quiet_output_option

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from analysis import Store
    from store.location import StorePath

_SPLIT_ORDER = {"val": 0, "test": 1, "train": 2}
_CONFIG_RE = re.compile(r"\bconfig((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_QUOTED_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_SORT_KEY_RE = re.compile(r"^(-?)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")


def list_runs(
    store: Store,
    *,
    where: str | None = None,
    sort: tuple[str, ...] = (),
    limit: int | None = None,
) -> pl.DataFrame:
    """The runs of ``store`` with their best metrics; see the module docstring."""
    import duckdb

    store.lock()
    while True:
        sql, params = _listing_sql(store)
        cur = store.con.cursor()
        try:
            rel = cur.sql(sql, params=params)
            columns = list(rel.columns)
            if where is not None:
                rel = _filter(cur, rel, where, columns)
            rel = rel.order(_order(cur, sort, columns)) if sort else rel
            if limit is not None:
                rel = rel.limit(limit)
            try:
                return rel.pl()
            except duckdb.Error as e:
                if store.recover(e):  # a file a compaction removed: its run listed again
                    continue
                raise _listing_error(e, store, cur, sql, params, where) from e
        finally:
            cur.close()


def _listing_error(
    e: duckdb.Error,
    store: Store,
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any],
    where: str | None,
) -> click.ClickException:
    """Blame ``--where`` only if the listing without it can be read (it was blamed,
    "--where None: Malformed JSON", for a bad payload in a run's events)."""
    import duckdb

    if where is not None:
        try:
            cur.sql(sql, params=params).fetchall()  # every column: count(*) would skip some
        except duckdb.Error:
            pass
        else:  # the rows are fine: the expression cannot be evaluated on them
            return QueryError(f"--where {where!r}: {_message(e)}")
    return StoreProblem(f"cannot list the runs in {str(store.path)!r}: {_message(e)}")


def _listing_sql(store: Store) -> tuple[str, list[Any]]:
    # A metric has a best value where it has a goal (the metric_goals view: the run's
    # define_metric(), else its name's words); a run's own goal picks its min or max.
    metrics = store.sql(
        "SELECT DISTINCT m.name, m.split FROM _run_metrics m "
        "JOIN metric_goals g USING (run_id, name) WHERE g.goal IS NOT NULL"
    )
    best: list[str] = []
    params: list[Any] = []
    seen: set[str] = set()
    ordered = sorted(
        metrics.iter_rows(), key=lambda r: (_SPLIT_ORDER.get(r[1] or "", 3), r[1] or "", r[0])
    )
    for name, split in ordered:
        column = re.sub(r"\W+", "_", f"best_{name}" + (f"_{split}" if split else "")).lower()
        if column in seen:
            continue
        seen.add(column)
        # Values as parameters; the column name is reduced to word characters above.
        only = "name = ? AND split IS NOT DISTINCT FROM ?"
        best.append(
            f"coalesce(min(lo) FILTER (WHERE {only} AND goal = 'min'), "
            f"max(hi) FILTER (WHERE {only} AND goal = 'max')) AS \"{column}\""
        )
        params += [name, split, name, split]
    best_sql = (", " + ", ".join(best)) if best else ""
    sql = f"""
        WITH best AS (
            SELECT run_id{best_sql}
            FROM _run_metrics JOIN metric_goals USING (run_id, name)
            GROUP BY run_id
        )
        SELECT r.run_id, r.name, r.status, r.steps, round(r.duration_s, 1) AS duration_s,
               b.* EXCLUDE (run_id), r.config, r.started_at
        FROM runs r LEFT JOIN best b USING (run_id)
        ORDER BY r.started_at, r.run_id
    """
    return sql, params


def _filter(
    cur: duckdb.DuckDBPyConnection, rel: duckdb.DuckDBPyRelation, where: str, columns: list[str]
) -> duckdb.DuckDBPyRelation:
    import duckdb

    if ";" in _QUOTED_RE.sub("''", where):
        raise QueryError(f"--where takes one expression, not statements: {where!r} holds ';'")
    try:
        expression = duckdb.SQLExpression(_translate(cur, where))
        return rel.filter(expression)
    except duckdb.BinderException as e:
        raise QueryError(
            f"--where {where!r}: {_message(e)}\ncolumns: {', '.join(columns)}, config.KEY"
        ) from e
    except duckdb.Error as e:
        raise QueryError(
            f"--where {where!r} is not one SQL expression "
            f"(e.g. \"config.lr < 1e-3 AND status = 'finished'\"): {_message(e)}"
        ) from e


def _order(cur: duckdb.DuckDBPyConnection, sort: tuple[str, ...], columns: list[str]) -> str:
    keys = []
    for item in (k.strip() for s in sort for k in s.split(",")):
        m = _SORT_KEY_RE.match(item)
        if m is None:
            raise QueryError(f"--sort {item!r}: expected a column name, '-' before it to reverse")
        descending, key = m.group(1) == "-", m.group(2)
        if key.startswith("config."):
            expression = _translate(cur, key)
        elif key in columns:
            expression = f'"{key}"'
        else:
            raise QueryError(f"--sort {key!r}: no such column; columns: {', '.join(columns)}")
        keys.append(f"{expression} {'DESC' if descending else 'ASC'} NULLS LAST")
    return ", ".join(keys)


def _translate(cur: duckdb.DuckDBPyConnection, text: str) -> str:
    """``config.a.b`` -> a typed JSON extraction from the ``config`` column, outside quotes."""

    def plain(part: str) -> str:
        return _CONFIG_RE.sub(lambda m: _config_value(cur, m.group(1)), part)

    out, at = [], 0
    for quoted in _QUOTED_RE.finditer(text):
        out += [plain(text[at : quoted.start()]), quoted.group(0)]
        at = quoted.end()
    out.append(plain(text[at:]))
    return "".join(out)


def _config_value(cur: duckdb.DuckDBPyConnection, dotted: str) -> str:
    path = "$" + dotted  # only word characters and dots: safe inside a string literal
    types = {
        t
        for (t,) in cur.execute("SELECT DISTINCT json_type(config, ?) FROM runs", [path]).fetchall()
        if t is not None and t != "NULL"
    }
    if not types:
        keys = sorted(
            k
            for (k,) in cur.execute(
                "SELECT DISTINCT unnest(json_keys(config)) FROM runs"
            ).fetchall()
        )
        raise QueryError(f"no run has config{dotted}; config keys: {', '.join(keys) or 'none'}")
    extracted = f"json_extract_string(config, '{path}')"
    if types <= {"BIGINT", "UBIGINT", "DOUBLE"}:
        return f"TRY_CAST({extracted} AS DOUBLE)"
    if types == {"BOOLEAN"}:
        return f"TRY_CAST({extracted} AS BOOLEAN)"
    return extracted


def _message(e: Exception) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


@click.command("runs")
@common.root_argument
@click.option(
    "--where",
    metavar="EXPR",
    default=None,
    help="Keep the runs where this SQL expression holds; config.KEY reads the config "
    "(e.g. \"config.lr < 1e-3 AND status = 'finished'\").",
)
@click.option(
    "--sort",
    multiple=True,
    metavar="COL[,COL]",
    help="Order by these columns (or config.KEY); '-COL' for descending. [default: start time]",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many runs.")
@format_option()
@output_option
@quiet_output_option
def runs(
    root: StorePath,
    where: str | None,
    sort: tuple[str, ...],
    limit: int | None,
    fmt: str,
    output: Path | None,
    quiet: bool,
) -> None:
    """List the runs in ROOT: status, steps, duration, best metrics, config.

    best_<metric>_<split> is the lowest value of a metric whose goal is min and the
    highest of one whose goal is max: as the run defined it (tel.define_metric), else
    from its name (loss, nll, ppl, bpc, mse, error... fall; acc, f1, auc, r2... rise).

    \b
    Example:
      telemetry runs runs/
      telemetry runs runs/ --where "config.lr < 1e-3" --sort -best_acc_val --limit 5
      telemetry runs runs/ --where "status = 'failed'" --format json
    """
    store = common.open_root(root, runs_only=True)  # digests: no segment read for finished runs
    emit(list_runs(store, where=where, sort=sort, limit=limit), fmt, output, quiet=quiet)
