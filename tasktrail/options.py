"""The options `serve`, `ingest` and `web` share, in groups by what they set, and the Settings they make.

Each option also reads TASKTRAIL_<OPTION>; its default is the Settings default (tasktrail/settings.py).
`--help` lists them in the order written here.
"""
from __future__ import annotations

import functools

import click

from .settings import Settings

PORT = click.IntRange(0, 65535)


def _options(*options):
    """Option decorators applied as one, in the order written (the first is listed first by --help)."""
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


# Where the log is: one DuckDB file, or a DuckLake store many processes share.
STORE = _options(
    click.option("--db", default=Settings.db, show_default=True, envvar="TASKTRAIL_DB",
                 help="DuckDB file holding the log."),
    click.option("--store", default="", envvar="TASKTRAIL_STORE",
                 help="A store many processes share instead of --db: ducklake:postgres:dbname=... host=... "
                      "(or ducklake:FILE for one node's catalog)."),
    click.option("--data-path", default="", envvar="TASKTRAIL_DATA_PATH",
                 help="Where a DuckLake store keeps its Parquet files (shared storage)."),
    click.option("--lake-commit-interval", type=click.FloatRange(0), default=Settings.lake_commit_interval_s,
                 show_default=True, envvar="TASKTRAIL_LAKE_COMMIT_INTERVAL",
                 help="Seconds a lake writer gathers requests per commit (fewer, larger Parquet files)."),
)

# The address every listener binds, and the three listeners' ports.
LISTENERS = _options(
    click.option("--host", default=Settings.host, show_default=True, envvar="TASKTRAIL_HOST",
                 help="Address every listener binds."),
    click.option("--http-port", type=PORT, default=Settings.http_port, show_default=True, envvar="TASKTRAIL_HTTP_PORT",
                 help="Web UI and JSON API. Use 0 to pick a free port."),
    click.option("--otlp-grpc-port", type=PORT, default=Settings.otlp_grpc_port, show_default=True,
                 envvar="TASKTRAIL_OTLP_GRPC_PORT", help="OTLP/gRPC receiver. Use 0 to pick a free port."),
    click.option("--otlp-http-port", type=PORT, default=Settings.otlp_http_port, show_default=True,
                 envvar="TASKTRAIL_OTLP_HTTP_PORT", help="OTLP/HTTP receiver. Use 0 to pick a free port."),
)

# Who may send and read: the tokens, /metrics, the Host names a listener answers to.
ACCESS = _options(
    click.option("--ingest-token", envvar="TASKTRAIL_INGEST_TOKEN", help="Bearer token OTLP clients must send."),
    click.option("--ingest-token-file", type=click.Path(exists=True, dir_okay=False),
                 envvar="TASKTRAIL_INGEST_TOKEN_FILE", help="Read the ingest token from this file."),
    click.option("--api-token", envvar="TASKTRAIL_API_TOKEN", help="Bearer token the UI/API needs."),
    click.option("--api-token-file", type=click.Path(exists=True, dir_okay=False),
                 envvar="TASKTRAIL_API_TOKEN_FILE", help="Read the API token from this file."),
    click.option("--metrics-public/--metrics-private", default=Settings.metrics_public, show_default=True,
                 envvar="TASKTRAIL_METRICS_PUBLIC",
                 help="Serve /metrics without the API token. Private by default: with --api-token set, /metrics "
                      "needs the token too (its labels name apps, tasks and runners); --metrics-public opens it "
                      "for a Prometheus that has none. Without --api-token every read is open."),
    click.option("--allowed-host", "allowed_hosts", multiple=True, envvar="TASKTRAIL_ALLOWED_HOSTS",
                 help="Repeatable. Another Host name a listener without a token answers to (DNS rebinding "
                      "protection): besides localhost, 127.0.0.1, [::1], --host and --public-url's host (and, "
                      "with --host 0.0.0.0 or ::, any IP address and this machine's hostname). "
                      "'*.example.com' allows subdomains, '*' any Host. Environment: space-separated."),
)

# What one connection and one request may take (tasktrail/connections.py).
CONNECTIONS = _options(
    click.option("--max-connections", type=click.IntRange(1), default=Settings.max_connections, show_default=True,
                 envvar="TASKTRAIL_MAX_CONNECTIONS",
                 help="Open connections per HTTP listener (web, OTLP/HTTP; also gRPC). At the cap a new connection "
                      "closes the one that has waited longest for a request head, else it gets 503."),
    click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=Settings.header_timeout_s,
                 show_default=True, envvar="TASKTRAIL_HEADER_TIMEOUT",
                 help="Seconds a client has to send a request's line and headers; then 408 and close."),
    click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=Settings.body_timeout_s,
                 show_default=True, envvar="TASKTRAIL_BODY_TIMEOUT",
                 help="Seconds a client has to send a request's body once its headers arrived; then 408 and close."),
    click.option("--keep-alive-timeout", type=click.FloatRange(min=0, min_open=True),
                 default=Settings.keep_alive_timeout_s, show_default=True, envvar="TASKTRAIL_KEEP_ALIVE_TIMEOUT",
                 help="Seconds an idle keep-alive HTTP connection stays open."),
    click.option("--max-body-bytes", type=click.IntRange(1024), default=Settings.max_body_bytes, show_default=True,
                 envvar="TASKTRAIL_MAX_BODY_BYTES", help="Largest OTLP request, before and after inflating (gzip, deflate)."),
)

# The write queue, DuckDB's memory and the decode/map processes.
WRITER = _options(
    click.option("--queue-records", type=click.IntRange(1), default=Settings.queue_records, show_default=True,
                 envvar="TASKTRAIL_QUEUE_RECORDS", help="Write-queue capacity in records (then 429)."),
    click.option("--duckdb-memory-limit", default=Settings.duckdb_memory_limit, show_default=True,
                 envvar="TASKTRAIL_DUCKDB_MEMORY_LIMIT",
                 help="DuckDB's memory limit: its buffer pool keeps what it wrote and read until it reaches it, so it "
                      "bounds most of the RSS (larger: faster reads of much data; queries past it spill to disk)."),
    click.option("--duckdb-checkpoint-threshold", default=Settings.duckdb_checkpoint_threshold, show_default=True,
                 envvar="TASKTRAIL_DUCKDB_CHECKPOINT_THRESHOLD",
                 help="DuckDB checkpoints once its WAL holds this much, under load too: rows not yet checkpointed "
                      "stay in memory (about twice the WAL)."),
    click.option("--duckdb-threads", type=click.IntRange(1, 64), default=Settings.duckdb_threads, show_default=True,
                 envvar="TASKTRAIL_DUCKDB_THREADS",
                 help="DuckDB's worker threads, for queries and checkpoints (default: 1 on one or two cores, where a "
                      "second one slows small reads down, else 2)."),
    click.option("--max-memory", default=Settings.max_memory, show_default=True, envvar="TASKTRAIL_MAX_MEMORY",
                 help="Cap on the process's memory (RLIMIT_DATA, Linux): a query that builds more outside "
                      "DuckDB's memory limit (one huge value: range(0, 100000000), repeat(...)) fails with a "
                      "400 instead of taking the machine's memory. At least --duckdb-memory-limit + 2GiB; "
                      "0 for no cap (and the allocators' defaults, ~5% faster ingest)."),
    click.option("--journal", default=Settings.journal, envvar="TASKTRAIL_JOURNAL",
                 help="Write-ahead journal file: requests are acknowledged once fsynced there and applied to the "
                      "store behind it (replayed once at start). Default: <db>.journal; none for a lake; "
                      "'off' acknowledges at the store's commit."),
    click.option("--journal-max-bytes", type=click.IntRange(1 << 20), default=Settings.journal_max_bytes,
                 show_default=True, envvar="TASKTRAIL_JOURNAL_MAX_BYTES",
                 help="Bytes of acknowledged requests not yet in the store the journal holds (then 429)."),
    click.option("--apply-interval", type=click.FloatRange(0, 10), default=Settings.apply_interval_s,
                 show_default=True, envvar="TASKTRAIL_APPLY_INTERVAL",
                 help="Seconds the writer gathers journaled requests per commit (reads wait for what was "
                      "acknowledged before them)."),
    click.option("--ingest-workers", type=click.IntRange(0, 64), default=Settings.ingest_workers,
                 show_default=True, envvar="TASKTRAIL_INGEST_WORKERS",
                 help="Processes that decode and map OTLP requests (0: in the server process)."),
)

# Runner liveness and the anomaly thresholds (query/anomalies.py).
ANOMALIES = _options(
    click.option("--runner-dead-after", type=float, default=Settings.runner_dead_after_s, show_default=True,
                 envvar="TASKTRAIL_RUNNER_DEAD_AFTER", help="Seconds of silence after which a runner is dead."),
    click.option("--max-pending", type=click.FloatRange(min=0, min_open=True), default=Settings.max_pending_s,
                 show_default=True, envvar="TASKTRAIL_MAX_PENDING",
                 help="Seconds waiting to start (PENDING, or REGISTERED and never run) after which an invocation is flagged stuck."),
    click.option("--slow-factor", type=click.FloatRange(min=0, min_open=True), default=Settings.slow_factor,
                 show_default=True, envvar="TASKTRAIL_SLOW_FACTOR",
                 help="Flag RUNNING invocations past this many times their task's p99."),
    click.option("--slow-min-samples", type=click.IntRange(1), default=Settings.slow_min_samples,
                 show_default=True, envvar="TASKTRAIL_SLOW_MIN_SAMPLES",
                 help="Finished invocations a task needs before its p99 is used."),
    click.option("--spike-window", type=click.FloatRange(min=0, min_open=True), default=Settings.spike_window_s,
                 show_default=True, envvar="TASKTRAIL_SPIKE_WINDOW",
                 help="Seconds over which a task's failure rate is compared with the day before."),
    click.option("--spike-factor", type=click.FloatRange(min=0, min_open=True), default=Settings.spike_factor,
                 show_default=True, envvar="TASKTRAIL_SPIKE_FACTOR",
                 help="Flag a task whose failure rate is this many times its baseline."),
)

# Where people reach the pages, and the trace viewers the pages link to.
LINKS = _options(
    click.option("--public-url", envvar="TASKTRAIL_PUBLIC_URL",
                 help="Base URL people reach the web UI at (behind a reverse proxy, with its path prefix): its "
                      "host is allowed, https:// makes the login cookie Secure (as does X-Forwarded-Proto: https "
                      "from a trusted proxy, FORWARDED_ALLOW_IPS), and alert rules and the Grafana dashboard link "
                      "to its pages (tasktrail_info on /metrics). Default: the served address, http://HOST:PORT."),
    click.option("--jaeger-url", envvar="TASKTRAIL_JAEGER_URL", help="Jaeger base URL for trace links."),
    click.option("--tempo-url", envvar="TASKTRAIL_TEMPO_URL", help="Tempo URL template holding {trace_id}."),
)

# Limits on reads: ad-hoc SQL and live log tails.
READ_LIMITS = _options(
    click.option("--sql-timeout", type=float, default=Settings.sql_timeout_s, show_default=True,
                 envvar="TASKTRAIL_SQL_TIMEOUT", help="Time limit in seconds of one ad-hoc SQL query."),
    click.option("--sql-max-rows", type=click.IntRange(1), default=Settings.sql_max_rows, show_default=True,
                 envvar="TASKTRAIL_SQL_MAX_ROWS", help="Row cap of one ad-hoc SQL query."),
    click.option("--sql-max-bytes", type=click.IntRange(1024), default=Settings.sql_max_bytes, show_default=True,
                 envvar="TASKTRAIL_SQL_MAX_BYTES",
                 help="Cap on the JSON bytes of one ad-hoc SQL answer: it is cut before the row that would pass "
                      "it, and says so (truncated_by: bytes)."),
    click.option("--sql-concurrency", type=click.IntRange(1, 64), default=Settings.sql_concurrency,
                 show_default=True, envvar="TASKTRAIL_SQL_CONCURRENCY",
                 help="Ad-hoc SQL queries that run at once; another waits up to 2 s, then gets 429 with Retry-After."),
    click.option("--max-tails", type=click.IntRange(1), default=Settings.max_tails, show_default=True,
                 envvar="TASKTRAIL_MAX_TAILS",
                 help="Live log tails (/api/v1/logs/tail) open at once, all clients together (then 429)."),
    click.option("--max-tails-per-client", type=click.IntRange(1), default=Settings.max_tails_per_client,
                 show_default=True, envvar="TASKTRAIL_MAX_TAILS_PER_CLIENT",
                 help="Live log tails one client address may hold open (then 429)."),
)

# What is kept, and for how long.
RETENTION = _options(
    click.option("--retention-days", type=click.FloatRange(min=0, min_open=True), default=Settings.retention_days,
                 show_default=True, envvar="TASKTRAIL_RETENTION_DAYS",
                 help="Days of data kept (whole days), counted from a record's time and from its arrival."),
    click.option("--keep-failed-days", type=click.FloatRange(min=0, min_open=True), default=Settings.keep_failed_days,
                 show_default=True, envvar="TASKTRAIL_KEEP_FAILED_DAYS", help="Days failed invocations are kept."),
    click.option("--max-logs-per-invocation", type=click.IntRange(1), default=Settings.max_logs_per_invocation,
                 show_default=True, envvar="TASKTRAIL_MAX_LOGS_PER_INVOCATION",
                 help="Log lines kept per invocation; a marker line says what was cut."),
)

# How much of a huge value a page shows inline.
PREVIEWS = _options(
    click.option("--preview-bytes", type=click.IntRange(64), default=Settings.preview_bytes, show_default=True,
                 envvar="TASKTRAIL_PREVIEW_BYTES",
                 help="Bytes of an argument, result, error message or log body shown inline (UTF-8); "
                      "the whole value downloads from its link."),
    click.option("--traceback-preview-bytes", type=click.IntRange(64), default=Settings.traceback_preview_bytes,
                 show_default=True, envvar="TASKTRAIL_TRACEBACK_PREVIEW_BYTES",
                 help="Bytes of an error traceback shown inline (UTF-8); the whole traceback downloads."),
)

# Celery's queue depths, counted on its broker by this process (tasktrail/celery_queues.py).
CELERY = _options(
    click.option("--celery-broker", envvar="TASKTRAIL_CELERY_BROKER",
                 help="Celery broker URL (redis://HOST:6379/0, amqp://USER:PASS@HOST:5672//): count the messages "
                      "waiting in each Celery queue every --celery-poll-interval and store them as queue depths "
                      "(/queues). Redis: LLEN of each queue's list; RabbitMQ: a passive queue.declare (with its "
                      "consumer count). `tasktrail serve` also acts as the agent of --celery-app on it: abort "
                      "revokes the task (terminate=True, SIGTERM), re-run sends it again (docs/control.md). "
                      "Not for `tasktrail web`, which receives nothing."),
    click.option("--celery-app", default=Settings.celery_app, show_default=True, envvar="TASKTRAIL_CELERY_APP",
                 help="App id of the counted queues: the service.namespace the Celery workers' instrumentation sends."),
    click.option("--celery-queues", default="", envvar="TASKTRAIL_CELERY_QUEUES",
                 help="Comma list of Celery queues to count (default: on Redis every queue kombu declared there, "
                      "and celery; on RabbitMQ celery)."),
    click.option("--celery-poll-interval", type=click.FloatRange(min=0, min_open=True), default=Settings.celery_poll_s,
                 show_default=True, envvar="TASKTRAIL_CELERY_POLL_INTERVAL",
                 help="Seconds between two counts of the Celery broker's queues."),
    click.option("--celery-result-backend", envvar="TASKTRAIL_CELERY_RESULT_BACKEND",
                 help="The Celery app's result backend URL (redis://HOST:6379/1): a re-run reads the task's name, "
                      "args and kwargs from its extended result (the app must set result_extended=True); "
                      "without it a re-run is refused (Celery's spans carry no arguments)."),
)

# issue 19: commands (docs/control.md).
CONTROL = _options(
    click.option("--command-ttl", type=click.FloatRange(min=0, min_open=True), default=Settings.command_ttl_s,
                 show_default=True,
                 envvar="TASKTRAIL_COMMAND_TTL", help="Seconds after which a command (abort, re-run) no runner's "
                 "agent finished ends `expired`."),
    click.option("--read-only", is_flag=True, default=False, envvar="TASKTRAIL_READ_ONLY",
                 help="Turn every action off: abort and re-run answer 403 and their buttons are hidden."),
)

LOG_LEVEL = click.option("--log-level", default="info", show_default=True,
                         type=click.Choice(["debug", "info", "warning", "error"]))

_GROUPS = (STORE, LISTENERS, ACCESS, CONNECTIONS, WRITER, ANOMALIES, LINKS, READ_LIMITS, RETENTION, PREVIEWS,
           CELERY, CONTROL, LOG_LEVEL)


def serve_options(fn):
    """The options `serve`, `ingest` and `web` share (each ignores the listeners it does not open)."""
    @functools.wraps(fn)
    def wrapper(**opts):
        return fn(**opts)
    return _options(*_GROUPS)(wrapper)


def _token(value, path):
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return value


def settings_from(opts: dict) -> Settings:
    """The Settings the shared options say (`opts`: their values by parameter name, --log-level aside)."""
    return Settings(
        db=opts["db"], store=opts["store"], data_path=opts["data_path"],
        lake_commit_interval_s=opts["lake_commit_interval"], host=opts["host"], http_port=opts["http_port"],
        otlp_grpc_port=opts["otlp_grpc_port"], otlp_http_port=opts["otlp_http_port"],
        ingest_token=_token(opts["ingest_token"], opts["ingest_token_file"]),
        api_token=_token(opts["api_token"], opts["api_token_file"]), metrics_public=opts["metrics_public"],
        allowed_hosts=tuple(opts["allowed_hosts"]),
        max_connections=opts["max_connections"], header_timeout_s=opts["header_timeout"],
        body_timeout_s=opts["body_timeout"], keep_alive_timeout_s=opts["keep_alive_timeout"],
        max_body_bytes=opts["max_body_bytes"], queue_records=opts["queue_records"],
        journal=opts["journal"], journal_max_bytes=opts["journal_max_bytes"],
        apply_interval_s=opts["apply_interval"],
        ingest_workers=opts["ingest_workers"], duckdb_memory_limit=opts["duckdb_memory_limit"],
        max_memory=opts["max_memory"], duckdb_checkpoint_threshold=opts["duckdb_checkpoint_threshold"],
        duckdb_threads=opts["duckdb_threads"],
        runner_dead_after_s=opts["runner_dead_after"], max_pending_s=opts["max_pending"],
        slow_factor=opts["slow_factor"], slow_min_samples=opts["slow_min_samples"],
        spike_window_s=opts["spike_window"], spike_factor=opts["spike_factor"],
        jaeger_url=opts["jaeger_url"], public_url=opts["public_url"] or None, tempo_url=opts["tempo_url"],
        sql_timeout_s=opts["sql_timeout"], sql_max_rows=opts["sql_max_rows"], sql_max_bytes=opts["sql_max_bytes"],
        sql_concurrency=opts["sql_concurrency"], max_tails=opts["max_tails"],
        max_tails_per_client=opts["max_tails_per_client"], retention_days=opts["retention_days"],
        keep_failed_days=opts["keep_failed_days"], max_logs_per_invocation=opts["max_logs_per_invocation"],
        preview_bytes=opts["preview_bytes"], traceback_preview_bytes=opts["traceback_preview_bytes"],
        command_ttl_s=opts["command_ttl"], read_only=opts["read_only"], **_celery(opts))


def _celery(opts: dict) -> dict:
    """The Celery broker poller's settings (tasktrail/celery_queues.py) from the CELERY options."""
    return {"celery_broker": opts["celery_broker"] or None, "celery_app": opts["celery_app"],
            "celery_queues": tuple(q.strip() for q in (opts["celery_queues"] or "").split(",") if q.strip()),
            "celery_poll_s": opts["celery_poll_interval"],
            "celery_result_backend": opts["celery_result_backend"] or None}
