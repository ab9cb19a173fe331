"""`tasktrail sql`: one read-only SQL statement over the log, on a file or through a running server."""
from __future__ import annotations

import csv
import json
import os
import sys

import click

from .settings import Settings

# The file `tasktrail demo` fills by default; `tasktrail sql` names it when the default store is empty.
DEMO_DB = "tasktrail-demo.duckdb"


@click.command()
@click.argument("statement")
@click.option("--db", default=Settings.db, show_default=True, envvar="TASKTRAIL_DB",
              help="DuckDB file to read (opened read-only; stop the server first, or use --url).")
@click.option("--url", envvar="TASKTRAIL_URL", help="A running server's base URL, e.g. http://127.0.0.1:8000.")
@click.option("--token", envvar="TASKTRAIL_API_TOKEN", help="API token for --url.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--max-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="Row cap (with --db; a server applies its own --sql-max-rows).")
@click.option("--max-bytes", type=click.IntRange(1024), default=Settings.sql_max_bytes, show_default=True,
              help="Cap on the answer's JSON bytes (with --db; a server applies its own --sql-max-bytes).")
@click.pass_context
def sql(ctx, statement, db, url, token, fmt, max_rows, max_bytes):
    """Run one read-only SQL statement over the log (tables and views: docs/sql.md)."""
    # Without --db, the demo's file beside the default one is named when the default holds nothing.
    demo = None
    if not url and ctx.get_parameter_source("db") == click.core.ParameterSource.DEFAULT:
        beside = os.path.join(os.path.dirname(db) or ".", DEMO_DB)
        demo = beside if os.path.exists(beside) else None
        if demo and not os.path.exists(db):
            raise click.ClickException(f"no store at {db}; the demo's store is {demo}: pass --db {demo}")
    if url:
        columns, rows, notice = _sql_remote(url, token, statement)
    else:
        columns, rows, notice, records = _sql_local(db, statement, max_rows, max_bytes)
        if demo and not records:
            click.echo(f"(read {db}, which holds no records yet; the demo's data is in {demo}: --db {demo})",
                       err=True)
    _print_rows(columns, rows, fmt)
    if notice:
        click.echo(f"(truncated: {notice})", err=True)


def _sql_local(db, statement, max_rows, max_bytes):
    """(columns, rows, notice, records in the store) of one statement on the file `db`."""
    from tasktrail.query import sql_guard, sql_values
    from tasktrail.query.errors import BadRequest
    from tasktrail.query.sql_answer import AnswerBuilder
    from tasktrail.store.api import QueryError, QueryTimeout, StoreUnavailable
    from tasktrail.store.duckdb import DuckDBStore

    if not os.path.exists(db):
        raise click.ClickException(f"no store at {db} (pass --db, or --url for a running server)")
    try:
        sql_guard.check(statement)
        store = DuckDBStore(db, read_only=True)
    except BadRequest as exc:
        raise click.ClickException(str(exc)) from None
    except StoreUnavailable as exc:
        raise click.ClickException(f"{exc}\n(if a server holds the file, use --url http://HOST:PORT)") from None
    try:
        answer = store.stream(statement, AnswerBuilder(max_rows=max_rows, max_bytes=max_bytes, timeout_s=60),
                              timeout_s=60, prepare=sql_values.macros(max_bytes))
        records = store.query("SELECT count(*) FROM ingest_ledger").rows[0][0]
    except QueryError as exc:
        raise click.ClickException(f"SQL error: {exc}") from None
    except QueryTimeout as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    return answer.columns, answer.python_rows(), answer.notice, records


def _sql_remote(url, token, statement):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url.rstrip("/") + "/api/v1/sql", data=json.dumps({"sql": statement}).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise click.ClickException(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc.reason}") from None
    notice = body.get("notice") or ("cut at the server's row cap" if body.get("truncated") else None)
    return body["columns"], body["rows"], notice


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _print_rows(columns, rows, fmt) -> None:
    if fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], indent=2))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows([[_cell(v) for v in r] for r in rows])
    else:
        cells = [[_cell(v) for v in r] for r in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        click.echo("  ".join("-" * w for w in widths))
        for r in cells:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
