"""The `tasktrail` command: serve (the default), sql, conventions."""
from __future__ import annotations

import asyncio
import csv
import functools
import json
import logging
import os
import sys

import click

from . import __version__, memory_cap
from .settings import Settings

# The file `tasktrail demo` fills by default; `tasktrail sql` names it when the default store is empty.
DEMO_DB = "tasktrail-demo.duckdb"


class DefaultGroup(click.Group):
    """`tasktrail` with no command, or with only options, runs `serve`."""

    def parse_args(self, ctx, args):
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "-h", "--version")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tasktrail")
def main() -> None:
    """tasktrail: OTLP in, an append-only DuckDB log, histories, timelines and runners out.

    Run `tasktrail serve` (the default command) and point a runner's OTLP exporter at it.
    """
    memory_cap.prepare_allocators()  # before DuckDB loads: freed memory goes back (--max-memory)


def _token(value, path):
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return value


_port = click.IntRange(0, 65535)


def _serve_options(fn):
    """The options `serve`, `ingest` and `web` share (each ignores the listeners it does not open)."""
    @click.option("--db", default=Settings.db, show_default=True, envvar="TASKTRAIL_DB",
                  help="DuckDB file holding the log.")
    @click.option("--store", default="", envvar="TASKTRAIL_STORE",
                  help="A store many processes share instead of --db: ducklake:postgres:dbname=... host=... "
                       "(or ducklake:FILE for one node's catalog).")
    @click.option("--data-path", default="", envvar="TASKTRAIL_DATA_PATH",
                  help="Where a DuckLake store keeps its Parquet files (shared storage).")
    @click.option("--lake-commit-interval", type=click.FloatRange(0), default=Settings.lake_commit_interval_s,
                  show_default=True, envvar="TASKTRAIL_LAKE_COMMIT_INTERVAL",
                  help="Seconds a lake writer gathers requests per commit (fewer, larger Parquet files).")
    @click.option("--host", default=Settings.host, show_default=True, envvar="TASKTRAIL_HOST",
                  help="Address every listener binds.")
    @click.option("--http-port", type=_port, default=Settings.http_port, show_default=True, envvar="TASKTRAIL_HTTP_PORT",
                  help="Web UI and JSON API. Use 0 to pick a free port.")
    @click.option("--otlp-grpc-port", type=_port, default=Settings.otlp_grpc_port, show_default=True,
                  envvar="TASKTRAIL_OTLP_GRPC_PORT", help="OTLP/gRPC receiver. Use 0 to pick a free port.")
    @click.option("--otlp-http-port", type=_port, default=Settings.otlp_http_port, show_default=True,
                  envvar="TASKTRAIL_OTLP_HTTP_PORT", help="OTLP/HTTP receiver. Use 0 to pick a free port.")
    @click.option("--ingest-token", envvar="TASKTRAIL_INGEST_TOKEN", help="Bearer token OTLP clients must send.")
    @click.option("--ingest-token-file", type=click.Path(exists=True, dir_okay=False),
                  envvar="TASKTRAIL_INGEST_TOKEN_FILE", help="Read the ingest token from this file.")
    @click.option("--api-token", envvar="TASKTRAIL_API_TOKEN", help="Bearer token the UI/API needs.")
    @click.option("--api-token-file", type=click.Path(exists=True, dir_okay=False),
                  envvar="TASKTRAIL_API_TOKEN_FILE", help="Read the API token from this file.")
    @click.option("--metrics-public/--metrics-private", default=Settings.metrics_public, show_default=True,
                  envvar="TASKTRAIL_METRICS_PUBLIC",
                  help="Serve /metrics without the API token. Private by default: with --api-token set, /metrics "
                       "needs the token too (its labels name apps, tasks and runners); --metrics-public opens it "
                       "for a Prometheus that has none. Without --api-token every read is open.")
    @click.option("--allowed-host", "allowed_hosts", multiple=True, envvar="TASKTRAIL_ALLOWED_HOSTS",
                  help="Repeatable. Another Host name a listener without a token answers to (DNS rebinding "
                       "protection): besides localhost, 127.0.0.1, [::1], --host and --public-url's host (and, "
                       "with --host 0.0.0.0 or ::, any IP address and this machine's hostname). "
                       "'*.example.com' allows subdomains, '*' any Host. Environment: space-separated.")
    @click.option("--max-connections", type=click.IntRange(1), default=Settings.max_connections, show_default=True,
                  envvar="TASKTRAIL_MAX_CONNECTIONS",
                  help="Open connections per HTTP listener (web, OTLP/HTTP; also gRPC). At the cap a new connection "
                       "closes the one that has waited longest for a request head, else it gets 503.")
    @click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=Settings.header_timeout_s,
                  show_default=True, envvar="TASKTRAIL_HEADER_TIMEOUT",
                  help="Seconds a client has to send a request's line and headers; then 408 and close.")
    @click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=Settings.body_timeout_s,
                  show_default=True, envvar="TASKTRAIL_BODY_TIMEOUT",
                  help="Seconds a client has to send a request's body once its headers arrived; then 408 and close.")
    @click.option("--keep-alive-timeout", type=click.FloatRange(min=0, min_open=True),
                  default=Settings.keep_alive_timeout_s, show_default=True, envvar="TASKTRAIL_KEEP_ALIVE_TIMEOUT",
                  help="Seconds an idle keep-alive HTTP connection stays open.")
    @click.option("--max-body-bytes", type=click.IntRange(1024), default=Settings.max_body_bytes, show_default=True,
                  envvar="TASKTRAIL_MAX_BODY_BYTES", help="Largest OTLP request, before and after inflating (gzip, deflate).")
    @click.option("--queue-records", type=click.IntRange(1), default=Settings.queue_records, show_default=True,
                  envvar="TASKTRAIL_QUEUE_RECORDS", help="Write-queue capacity in records (then 429).")
    @click.option("--duckdb-memory-limit", default=Settings.duckdb_memory_limit, show_default=True,
                  envvar="TASKTRAIL_DUCKDB_MEMORY_LIMIT",
                  help="DuckDB's memory limit: its buffer pool grows to it, so it bounds most of the RSS.")
    @click.option("--max-memory", default=Settings.max_memory, show_default=True, envvar="TASKTRAIL_MAX_MEMORY",
                  help="Cap on the process's memory (RLIMIT_DATA, Linux): a query that builds more outside "
                       "DuckDB's memory limit (one huge value: range(0, 100000000), repeat(...)) fails with a "
                       "400 instead of taking the machine's memory. At least --duckdb-memory-limit + 2GiB; "
                       "0 for no cap.")
    @click.option("--ingest-workers", type=click.IntRange(0, 64), default=Settings.ingest_workers,
                  show_default=True, envvar="TASKTRAIL_INGEST_WORKERS",
                  help="Processes that decode and map OTLP requests (0: in the server process).")
    @click.option("--runner-dead-after", type=float, default=Settings.runner_dead_after_s, show_default=True,
                  envvar="TASKTRAIL_RUNNER_DEAD_AFTER", help="Seconds of silence after which a runner is dead.")
    @click.option("--max-pending", type=click.FloatRange(min=0, min_open=True), default=Settings.max_pending_s,
                  show_default=True, envvar="TASKTRAIL_MAX_PENDING",
                  help="Seconds waiting to start (PENDING, or REGISTERED and never run) after which an invocation is flagged stuck.")
    @click.option("--slow-factor", type=click.FloatRange(min=0, min_open=True), default=Settings.slow_factor,
                  show_default=True, envvar="TASKTRAIL_SLOW_FACTOR",
                  help="Flag RUNNING invocations past this many times their task's p99.")
    @click.option("--slow-min-samples", type=click.IntRange(1), default=Settings.slow_min_samples,
                  show_default=True, envvar="TASKTRAIL_SLOW_MIN_SAMPLES",
                  help="Finished invocations a task needs before its p99 is used.")
    @click.option("--spike-window", type=click.FloatRange(min=0, min_open=True), default=Settings.spike_window_s,
                  show_default=True, envvar="TASKTRAIL_SPIKE_WINDOW",
                  help="Seconds over which a task's failure rate is compared with the day before.")
    @click.option("--spike-factor", type=click.FloatRange(min=0, min_open=True), default=Settings.spike_factor,
                  show_default=True, envvar="TASKTRAIL_SPIKE_FACTOR",
                  help="Flag a task whose failure rate is this many times its baseline.")
    @click.option("--public-url", envvar="TASKTRAIL_PUBLIC_URL",
                  help="Base URL people reach the web UI at (behind a reverse proxy, with its path prefix): its "
                       "host is allowed, https:// makes the login cookie Secure (as does X-Forwarded-Proto: https "
                       "from a trusted proxy, FORWARDED_ALLOW_IPS), and alert rules and the Grafana dashboard link "
                       "to its pages (tasktrail_info on /metrics). Default: the served address, http://HOST:PORT.")
    @click.option("--jaeger-url", envvar="TASKTRAIL_JAEGER_URL", help="Jaeger base URL for trace links.")
    @click.option("--tempo-url", envvar="TASKTRAIL_TEMPO_URL", help="Tempo URL template holding {trace_id}.")
    @click.option("--sql-timeout", type=float, default=Settings.sql_timeout_s, show_default=True,
                  envvar="TASKTRAIL_SQL_TIMEOUT", help="Time limit in seconds of one ad-hoc SQL query.")
    @click.option("--sql-max-rows", type=click.IntRange(1), default=Settings.sql_max_rows, show_default=True,
                  envvar="TASKTRAIL_SQL_MAX_ROWS", help="Row cap of one ad-hoc SQL query.")
    @click.option("--sql-max-bytes", type=click.IntRange(1024), default=Settings.sql_max_bytes, show_default=True,
                  envvar="TASKTRAIL_SQL_MAX_BYTES",
                  help="Cap on the JSON bytes of one ad-hoc SQL answer: it is cut before the row that would pass "
                       "it, and says so (truncated_by: bytes).")
    @click.option("--sql-concurrency", type=click.IntRange(1, 64), default=Settings.sql_concurrency,
                  show_default=True, envvar="TASKTRAIL_SQL_CONCURRENCY",
                  help="Ad-hoc SQL queries that run at once; another waits up to 2 s, then gets 429 with Retry-After.")
    @click.option("--max-tails", type=click.IntRange(1), default=Settings.max_tails, show_default=True,
                  envvar="TASKTRAIL_MAX_TAILS",
                  help="Live log tails (/api/v1/logs/tail) open at once, all clients together (then 429).")
    @click.option("--max-tails-per-client", type=click.IntRange(1), default=Settings.max_tails_per_client,
                  show_default=True, envvar="TASKTRAIL_MAX_TAILS_PER_CLIENT",
                  help="Live log tails one client address may hold open (then 429).")
    @click.option("--retention-days", type=click.FloatRange(min=0, min_open=True), default=Settings.retention_days,
                  show_default=True, envvar="TASKTRAIL_RETENTION_DAYS",
                  help="Days of data kept (whole days), counted from a record's time and from its arrival.")
    @click.option("--keep-failed-days", type=click.FloatRange(min=0, min_open=True), default=Settings.keep_failed_days,
                  show_default=True, envvar="TASKTRAIL_KEEP_FAILED_DAYS", help="Days failed invocations are kept.")
    @click.option("--max-logs-per-invocation", type=click.IntRange(1), default=Settings.max_logs_per_invocation,
                  show_default=True, envvar="TASKTRAIL_MAX_LOGS_PER_INVOCATION",
                  help="Log lines kept per invocation; a marker line says what was cut.")
    @click.option("--preview-bytes", type=click.IntRange(64), default=Settings.preview_bytes, show_default=True,
                  envvar="TASKTRAIL_PREVIEW_BYTES",
                  help="Bytes of an argument, result, error message or log body shown inline (UTF-8); "
                       "the whole value downloads from its link.")
    @click.option("--traceback-preview-bytes", type=click.IntRange(64), default=Settings.traceback_preview_bytes,
                  show_default=True, envvar="TASKTRAIL_TRACEBACK_PREVIEW_BYTES",
                  help="Bytes of an error traceback shown inline (UTF-8); the whole traceback downloads.")
    @click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
    @functools.wraps(fn)
    def wrapper(**opts):
        return fn(**opts)
    return wrapper


def _run(role: str, log_level: str, **opts) -> None:
    from .server import print_bound, serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(
        db=opts["db"], store=opts["store"], data_path=opts["data_path"],
        lake_commit_interval_s=opts["lake_commit_interval"], host=opts["host"], http_port=opts["http_port"],
        otlp_grpc_port=opts["otlp_grpc_port"], otlp_http_port=opts["otlp_http_port"],
        ingest_token=_token(opts["ingest_token"], opts["ingest_token_file"]),
        api_token=_token(opts["api_token"], opts["api_token_file"]), metrics_public=opts["metrics_public"],
        allowed_hosts=tuple(opts["allowed_hosts"]),
        max_connections=opts["max_connections"], header_timeout_s=opts["header_timeout"],
        body_timeout_s=opts["body_timeout"], keep_alive_timeout_s=opts["keep_alive_timeout"],
        max_body_bytes=opts["max_body_bytes"], queue_records=opts["queue_records"],
        ingest_workers=opts["ingest_workers"], duckdb_memory_limit=opts["duckdb_memory_limit"],
        max_memory=opts["max_memory"],
        runner_dead_after_s=opts["runner_dead_after"], max_pending_s=opts["max_pending"],
        slow_factor=opts["slow_factor"], slow_min_samples=opts["slow_min_samples"],
        spike_window_s=opts["spike_window"], spike_factor=opts["spike_factor"],
        jaeger_url=opts["jaeger_url"], public_url=opts["public_url"] or None, tempo_url=opts["tempo_url"],
        sql_timeout_s=opts["sql_timeout"], sql_max_rows=opts["sql_max_rows"], sql_max_bytes=opts["sql_max_bytes"],
        sql_concurrency=opts["sql_concurrency"], max_tails=opts["max_tails"],
        max_tails_per_client=opts["max_tails_per_client"], retention_days=opts["retention_days"],
        keep_failed_days=opts["keep_failed_days"], max_logs_per_invocation=opts["max_logs_per_invocation"],
        preview_bytes=opts["preview_bytes"], traceback_preview_bytes=opts["traceback_preview_bytes"])
    problems = settings.validate()
    if role != "all" and not settings.store:
        problems.append(f"`tasktrail {role}` shares a store with other processes: give --store ducklake:... "
                        "and --data-path (one DuckDB file belongs to one `tasktrail serve`)")
    if problems:
        raise click.UsageError("; ".join(problems))
    if settings.exposed_without_token():
        click.echo(f"warning: listening on {settings.host} without both --ingest-token and --api-token: "
                   "anyone who can reach it can send data or read it", err=True)
    memory_cap.apply(settings.max_memory)
    from tasktrail.store.api import StoreUnavailable
    try:
        asyncio.run(run_server(settings, role=role, on_ready=lambda b: print_bound(settings, b)))
    except (OSError, StoreUnavailable) as exc:  # a port taken, a store another process holds
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.command()
@_serve_options
def serve(**opts):
    """Receive OTLP (gRPC and HTTP), store it, serve the UI and API, until Ctrl-C."""
    _run("all", **opts)


@main.command()
@_serve_options
def ingest(**opts):
    """Receivers and writer only (no web), into a shared --store ducklake:...; run several behind a
    load balancer. The web options are ignored."""
    _run("ingest", **opts)


@main.command()
@_serve_options
def web(**opts):
    """UI, API and /metrics only (no ingest) over a shared --store ducklake:...; it also keeps the
    store's caches folded, compacts files and applies retention. The OTLP options are ignored."""
    _run("web", **opts)


@main.command()
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


@main.command()
@click.option("--db", default=f"./{DEMO_DB}", show_default=True, help="DuckDB file for the demo's data.")
@click.option("--host", default=Settings.host, show_default=True)
@click.option("--http-port", type=_port, default=Settings.http_port, show_default=True,
              help="Web UI and API. Use 0 to pick a free port.")
@click.option("--otlp-grpc-port", type=_port, default=Settings.otlp_grpc_port, show_default=True)
@click.option("--otlp-http-port", type=_port, default=Settings.otlp_http_port, show_default=True)
@click.option("--every", type=click.FloatRange(1), default=15.0, show_default=True,
              help="Seconds between workload rounds.")
@click.option("--runner", type=click.Choice(["auto", "pynenc", "rustvello"]), default="auto", show_default=True,
              help="auto: every runner that is installed — rustvello (the `demo` extra) and pynenc (a Python "
                   "3.12 with pynenc 0.4: TASKTRAIL_PY312 or the project's .venv312); what is missing is said "
                   "once, with the command that installs it.")
def demo(db, host, http_port, otlp_grpc_port, otlp_http_port, every, runner):
    """Serve tasktrail and feed it real runners until Ctrl-C.

    rustvello 0.9 (`pip install -e '.[demo]'`): retries and a workflow. pynenc 0.4 where a Python 3.12
    with pynenc is found (TASKTRAIL_PY312 or the project's .venv312): retries, a workflow, a status
    trigger, cron core tasks and the atomic service, alternating the thread and persistent-process
    runners. By default every one that is installed runs, each round.
    """
    from pathlib import Path

    from .demo.loop import GET_PYNENC, GET_RUSTVELLO, DemoLoop, find_python312, has_rustvello
    from .server import print_bound, serve as run_server

    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import secrets

    # rustvello sends OTLP only with a bearer token: the demo's server makes one up for its runners.
    token = secrets.token_urlsafe(16)
    settings = Settings(db=db, host=host, http_port=http_port, otlp_grpc_port=otlp_grpc_port,
                        otlp_http_port=otlp_http_port, ingest_token=token)
    problems = settings.validate()
    if problems:
        raise click.UsageError("; ".join(problems))
    python312 = None if runner == "rustvello" else find_python312(Path(__file__).resolve().parents[1])
    rustvello = runner != "pynenc" and has_rustvello()
    if runner == "pynenc" and python312 is None:
        raise click.ClickException(f"no Python 3.12 with pynenc 0.4 and tasktrail; to get one: {GET_PYNENC}")
    if runner == "rustvello" and not rustvello:
        raise click.ClickException(f"rustvello is not installed; to get it: {GET_RUSTVELLO}")
    if runner == "auto":
        if not rustvello:
            click.echo(f"demo: rustvello is not installed, so its runs are left out; to get it: {GET_RUSTVELLO}")
        if python312 is None:
            click.echo(f"demo: no Python 3.12 with pynenc 0.4, so pynenc's runs are left out; to get it: {GET_PYNENC}")
    loops = []

    def ready(bound):
        print_bound(settings, bound)
        h = host if ":" not in host else f"[{host}]"
        loop = DemoLoop(f"http://{h}:{bound.otlp_http_port}", f"{h}:{bound.otlp_grpc_port}", token, every, python312,
                        rustvello=rustvello)
        click.echo(f"demo: feeding it {loop.runner_name} every {every:g} s; open http://{h}:{bound.web_port}")
        loop.start()
        loops.append(loop)

    from tasktrail.store.api import StoreUnavailable
    try:
        asyncio.run(run_server(settings, on_ready=ready))
    except (OSError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        for loop in loops:
            loop.stop()


@main.command()
@click.option("--db", default=Settings.db, show_default=True, envvar="TASKTRAIL_DB",
              help="DuckDB file (stop the server first).")
@click.option("--store", default="", envvar="TASKTRAIL_STORE", help="A DuckLake store (ducklake:...) instead.")
@click.option("--data-path", default="", envvar="TASKTRAIL_DATA_PATH", help="The DuckLake store's Parquet files.")
def rebuild(db, store, data_path):
    """Recompute the caches kept beside the log (invocation_state, runner_state) from the log itself."""
    import os

    from tasktrail.store.api import StoreUnavailable

    try:
        if store:
            from tasktrail.store.ducklake import DuckLakeStore
            st = DuckLakeStore(store.removeprefix("ducklake:"), data_path, fold=False)
        else:
            from tasktrail.store.duckdb import DuckDBStore
            if not os.path.exists(db):
                raise click.ClickException(f"no store at {db}")
            st = DuckDBStore(db)
    except StoreUnavailable as exc:
        raise click.ClickException(f"{exc}\n(stop the server that holds it first)") from None
    try:
        n = st.rebuild_state()
    finally:
        st.close()
    click.echo(f"rebuilt invocation_state and runner_state: {n} invocations")


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def conventions(output):
    """Print the tasktrail.v1 reference (docs/tasktrail-v1.md is this output)."""
    from tasktrail.proto.reference import render

    text = render()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
