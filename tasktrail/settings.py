"""Settings: one frozen dataclass with defaults, a help table, and validation at start-up.

The CLI builds it (flags, else TASKTRAIL_<OPTION> environment variables, else these defaults;
tokens also from files) and passes it down; nothing reads settings from globals.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from tasktrail import memory_cap
from tasktrail.proto.status import RUNNER_DEAD_AFTER_S

CELERY_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")  # brokers --celery-broker can count
# Decode/map processes: one per core but the two the server process itself keeps busy (its receivers and
# journal on one, its writer thread and DuckDB's on the other), at most 4 (the writer is one thread; more do not
# help it). Each costs ~75 MB of RSS, ~35 MB of it its own (pyarrow is most of its imports). On two cores none:
# B1 at 300k records, four alternating pairs on this 2-core machine, served 16.0-30.1k records/s (median 21.5k)
# with none against 15.6-20.2k (median 19.5k) with one, and 363-394 MB against 437-443 MB of RSS.
DEFAULT_INGEST_WORKERS = max(0, min(4, (os.cpu_count() or 1) - 2))
# DuckDB's threads (its worker pool: a query's scans and aggregates, the checkpoint's compression). On two cores
# one: the second thread wakes for every read (a point read's scan is split in row groups) and then waits for a
# core beside the server's own threads; pages of B9's 10k store over HTTP, both settings served side by side
# under load 6: medians 8-37 % lower with one (history 12.7 / 14.6 ms, dashboard 44.6 / 59.6, family 31.0 / 42.3),
# and 25-35 % less CPU per read in process (the whole-run timeline: 82 / 125 ms of CPU, the same wall time).
DEFAULT_DUCKDB_THREADS = 1 if (os.cpu_count() or 1) <= 2 else 2


@dataclass(frozen=True)
class Settings:
    db: str = "./tasktrail.duckdb"
    store: str = ""                      # "" = the embedded file at `db`; "ducklake:<catalog>" = a lake
    data_path: str = ""                  # the lake's Parquet files
    lake_commit_interval_s: float = 1.0
    host: str = "127.0.0.1"
    http_port: int = 8000
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    ingest_token: Optional[str] = None
    api_token: Optional[str] = None
    # /metrics needs the API token like every read (its labels name apps, tasks and runners) unless opened.
    metrics_public: bool = False
    # Hosts a listener without a token answers to, besides loopback and --host (tasktrail/hosts.py).
    allowed_hosts: tuple = ()
    # Where browsers reach the UI: its host is allowed, https:// makes the login cookie Secure, and alerts and
    # dashboards link to its pages. None: the served address (server.public_url).
    public_url: Optional[str] = None
    # Per HTTP listener (web, OTLP/HTTP): tasktrail/connections.py.
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_timeout_s: float = 5.0
    max_body_bytes: int = 64 * 1024 * 1024
    queue_records: int = 200_000
    max_batch_records: int = 100_000
    # The write-ahead journal (ingest/journal.py): "" = `<db>.journal` beside the embedded file, and none for
    # a lake (its nodes acknowledge at the lake's commit); "off" = none; else its path.
    journal: str = ""
    journal_max_bytes: int = 256 << 20
    # Seconds the writer gathers journaled requests before a commit to the store.
    apply_interval_s: float = 0.2
    ingest_workers: int = DEFAULT_INGEST_WORKERS
    # DuckDB keeps every block it wrote or read loaded until its memory limit is reached (at ~0.4 MB/s of cache
    # at 6,500 records/s), so the limit is what an ingesting server's RSS grows to: 1GB made 1.1 GB after 13 min.
    duckdb_memory_limit: str = "256MB"
    # DuckDB checkpoints once its WAL holds this much: uncheckpointed rows stay in memory (about twice the WAL).
    duckdb_checkpoint_threshold: str = "16MB"
    duckdb_threads: int = DEFAULT_DUCKDB_THREADS
    # The whole process's data segment (RLIMIT_DATA: tasktrail/memory_cap.py), which bounds what one query
    # builds outside DuckDB's memory limit. "0": no cap.
    max_memory: str = "4GB"
    runner_dead_after_s: float = RUNNER_DEAD_AFTER_S
    # Anomaly thresholds (query/anomalies.py).
    max_pending_s: float = 300.0
    slow_factor: float = 3.0
    slow_min_samples: int = 20
    spike_window_s: float = 900.0
    spike_factor: float = 3.0
    jaeger_url: Optional[str] = None
    tempo_url: Optional[str] = None
    sql_timeout_s: float = 10.0
    sql_max_rows: int = 10_000
    # Read limits (docs/reliability.md, "Limits on reads"): one SQL answer's JSON bytes, SQL queries at once,
    # live log tails in all and per client address.
    sql_max_bytes: int = 32 << 20
    sql_concurrency: int = 2
    max_tails: int = 256
    max_tails_per_client: int = 16
    retention_days: float = 90
    keep_failed_days: float = 180
    max_logs_per_invocation: int = 10_000
    retention_every_s: float = 86_400
    # Previews of huge values (arguments, results, error messages, log bodies; tracebacks): UTF-8 bytes.
    preview_bytes: int = 4096
    traceback_preview_bytes: int = 16384
    # Celery's queue depths, polled from its broker by this process (tasktrail/celery_queues.py).
    celery_broker: Optional[str] = None
    celery_app: str = "celery"
    celery_queues: tuple = ()
    celery_poll_s: float = 5.0
    # Where the Celery app keeps its results: a re-run reads the task's arguments there (celery_control.py).
    celery_result_backend: Optional[str] = None
    # issue 19: commands (tasktrail/commands.py, docs/control.md).
    command_ttl_s: float = 600.0
    read_only: bool = False

    def validate(self) -> list[str]:
        """Reasons the settings cannot work; empty when they can."""
        problems = []
        for name in ("http_port", "otlp_grpc_port", "otlp_http_port"):
            v = getattr(self, name)
            if not 0 <= v <= 65535:
                problems.append(f"{name} must be between 0 and 65535, got {v}")
        nonzero = [p for p in (self.http_port, self.otlp_grpc_port, self.otlp_http_port) if p]
        if len(set(nonzero)) != len(nonzero):
            problems.append("http_port, otlp_grpc_port and otlp_http_port must differ (0 picks a free port)")
        if self.max_body_bytes < 1024:
            problems.append("max_body_bytes must be at least 1024")
        for name, lo in (("ingest_workers", 0), ("duckdb_threads", 1)):
            if not lo <= getattr(self, name) <= 64:
                problems.append(f"{name} must be between {lo} and 64")
        if self.runner_dead_after_s <= 0:
            problems.append("runner_dead_after_s must be positive")
        for name in ("max_pending_s", "slow_factor", "spike_window_s", "spike_factor"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.slow_min_samples < 1:
            problems.append("slow_min_samples must be at least 1")
        if self.retention_days <= 0 or self.keep_failed_days <= 0:
            problems.append("retention_days and keep_failed_days must be positive")
        if self.preview_bytes < 64 or self.traceback_preview_bytes < 64:
            problems.append("preview_bytes and traceback_preview_bytes must be at least 64")
        problems.extend(memory_cap.problems(self.max_memory, self.duckdb_memory_limit))
        if not memory_cap.parse_size(self.duckdb_checkpoint_threshold):
            problems.append(f"duckdb_checkpoint_threshold must be a size such as 16MB, "
                            f"got {self.duckdb_checkpoint_threshold!r}")
        if self.sql_max_bytes < 1024:
            problems.append("sql_max_bytes must be at least 1024")
        if not 1 <= self.sql_concurrency <= 64:
            problems.append("sql_concurrency must be between 1 and 64")
        if self.max_tails < 1 or self.max_tails_per_client < 1:
            problems.append("max_tails and max_tails_per_client must be at least 1")
        if not 0 < self.command_ttl_s < float("inf"):   # also refuses nan
            problems.append(f"command_ttl_s (--command-ttl) must be a positive number of seconds, got {self.command_ttl_s}")
        if self.max_logs_per_invocation < 1:
            problems.append("max_logs_per_invocation must be at least 1")
        if self.store and not self.store.startswith("ducklake:"):
            problems.append("store must be ducklake:postgres:<libpq settings> or ducklake:<catalog file>")
        if self.store and not self.data_path:
            problems.append("a ducklake store needs data_path (--data-path)")
        if self.public_url is not None and (
                not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.public_url)
                or not urlsplit(self.public_url).hostname):
            problems.append(f"public_url must be an http:// or https:// URL with a host and without query or "
                            f"fragment, got {self.public_url!r}")
        if self.tempo_url and "{trace_id}" not in self.tempo_url:
            problems.append("tempo_url must be a template holding {trace_id}")
        problems.extend(self._connection_problems())
        problems.extend(self._writer_problems())
        problems.extend(self._celery_problems())
        from .hosts import host_rule
        try:
            host_rule(self.host, self.allowed_hosts, hostname="")
        except ValueError as exc:
            problems.append(str(exc))
        return problems

    def _writer_problems(self) -> list[str]:
        problems = []
        if self.queue_records < 1:
            problems.append("queue_records must be positive")
        if self.journal_max_bytes < 1 << 20:
            problems.append("journal_max_bytes must be at least 1 MiB")
        if not 0 <= self.apply_interval_s <= 10:   # also refuses nan
            problems.append(f"apply_interval_s (--apply-interval) must be between 0 and 10 seconds, "
                            f"got {self.apply_interval_s}")
        return problems

    def _connection_problems(self) -> list[str]:
        problems = []
        if self.max_connections < 1:
            problems.append("max_connections must be at least 1")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        return problems

    def _celery_problems(self) -> list[str]:
        problems = []
        if self.celery_broker and urlsplit(self.celery_broker).scheme not in CELERY_SCHEMES:
            problems.append(f"celery_broker must be a {', '.join(CELERY_SCHEMES)} URL, got scheme "
                            f"{urlsplit(self.celery_broker).scheme!r}")
        if self.celery_result_backend and not self.celery_broker:
            problems.append("celery_result_backend needs celery_broker (tasktrail acts on Celery through its broker)")
        if self.celery_poll_s <= 0:
            problems.append("celery_poll_s must be positive")
        return problems

    def journal_path(self) -> str | None:
        """Where the journal lives, or None when requests are acknowledged at the store's commit."""
        if self.journal == "off" or (not self.journal and self.store):
            return None
        return self.journal or self.db + ".journal"

    def exposed_without_token(self) -> bool:
        return self.host not in ("127.0.0.1", "localhost", "::1") and not (self.ingest_token and self.api_token)


SETTINGS_HELP = {
    "db": "DuckDB file holding the log.",
    "store": "ducklake:postgres:dbname=... host=... (or ducklake:FILE) for a store many processes share.",
    "data_path": "Where a DuckLake store keeps its Parquet files (shared storage for many nodes).",
    "lake_commit_interval_s": "Seconds a lake writer gathers requests per commit (fewer, larger files).",
    "host": "Address every listener binds (127.0.0.1 unless told).",
    "http_port": "Web UI, JSON API, /metrics, /healthz. 0 picks a free port.",
    "otlp_grpc_port": "OTLP/gRPC receiver. 0 picks a free port.",
    "otlp_http_port": "OTLP/HTTP receiver. 0 picks a free port.",
    "ingest_token": "Bearer token OTLP clients must send.",
    "api_token": "Bearer token the UI/API needs (health stays open).",
    "metrics_public": "Serve /metrics without the API token (for a Prometheus that has none). Off by default: "
                      "with an API token set, /metrics needs it too.",
    "allowed_hosts": "More Host names a listener without a token answers to (besides localhost, 127.0.0.1, [::1], "
                     "--host and --public-url's host; with --host 0.0.0.0 also IP addresses and the hostname); "
                     "'*.example.com' for subdomains, '*' for any.",
    "max_connections": "Open connections per HTTP listener; at the cap the one that waited longest for a request "
                       "head is closed, else 503.",
    "header_timeout_s": "Seconds a client has to send a request's line and headers (then 408 and close).",
    "body_timeout_s": "Seconds a client has to send a request's body after its headers (then 408 and close).",
    "keep_alive_timeout_s": "Seconds an idle keep-alive connection stays open.",
    "max_body_bytes": "Largest OTLP request, before and after inflating (gzip, deflate).",
    "queue_records": "Write-queue capacity in records; past it ingest answers 429 / RESOURCE_EXHAUSTED.",
    "max_batch_records": "Most records the writer commits in one transaction.",
    "journal": "The write-ahead journal: a request is acknowledged once fsynced there, and applied to the store "
               "behind it (replayed at start, once). Default: <db>.journal beside the DuckDB file; none for a "
               "lake; 'off' acknowledges at the store's commit.",
    "journal_max_bytes": "Bytes of acknowledged requests the journal holds before the store commits them; past "
                         "it ingest answers 429 / RESOURCE_EXHAUSTED.",
    "apply_interval_s": "Seconds the writer gathers journaled requests per commit to the store (larger batches; "
                        "a read waits for what was acknowledged before it, at most 1 s).",
    "ingest_workers": "Processes that decode and map OTLP requests (0: in the server process).",
    "duckdb_memory_limit": "DuckDB memory limit.",
    "duckdb_checkpoint_threshold": "DuckDB folds its write-ahead log into the file once it holds this much, under "
                                   "load too: the rows not yet checkpointed stay in memory (about twice the WAL).",
    "duckdb_threads": "DuckDB's worker threads (queries and checkpoints); default 1 on one or two cores, else 2.",
    "max_memory": "Cap on the process's memory (RLIMIT_DATA), for what a query builds outside DuckDB's memory "
                  "limit (one huge value): that query fails with a 400 naming it and the server goes on; 0: none.",
    "runner_dead_after_s": "A runner is dead when silent this long (pynenc's default: 10 min).",
    "max_pending_s": "An invocation waiting to start (PENDING, or REGISTERED and never run) longer than this is an anomaly (stuck).",
    "slow_factor": "An invocation RUNNING longer than this many times its task's p99 is an anomaly (slow).",
    "slow_min_samples": "Finished invocations a task needs before its p99 counts for `slow`.",
    "spike_window_s": "Window of the failure-spike check, compared with the day before it.",
    "spike_factor": "A task's failure rate over the window this many times its baseline is a spike.",
    "jaeger_url": "Jaeger base URL; invocations link to {jaeger}/trace/{trace_id}.",
    "tempo_url": "Grafana Tempo URL template holding {trace_id}.",
    "public_url": "Base URL people reach the web UI at (behind a proxy, a path prefix included): its host is "
                  "allowed, https:// makes the login cookie Secure, alerts and the Grafana dashboard link to its "
                  "pages through tasktrail_info. Default: the served address.",
    "sql_timeout_s": "Time limit of one ad-hoc SQL query.",
    "sql_max_rows": "Row cap of one ad-hoc SQL query.",
    "sql_max_bytes": "Cap on the JSON bytes of one ad-hoc SQL answer; past it the answer is cut and says so.",
    "sql_concurrency": "Ad-hoc SQL queries run at once; more wait up to 2 s, then 429 with Retry-After.",
    "max_tails": "Live log tails (/api/v1/logs/tail) open at once; past it 429 with Retry-After.",
    "max_tails_per_client": "Live log tails one client address may hold open; past it 429 with Retry-After.",
    "retention_days": "Keep this many days of data (whole days; invocations go whole), counted from a record's "
                      "time and from its arrival: nothing goes within this many days of being acknowledged.",
    "keep_failed_days": "Keep failed invocations this long.",
    "max_logs_per_invocation": "Log lines kept per invocation (its first ones); a marker says what was cut.",
    "retention_every_s": "How often retention runs (it also runs at start).",
    "preview_bytes": "Bytes of an argument, result, error message or log body shown inline; the rest downloads.",
    "traceback_preview_bytes": "Bytes of an error traceback shown inline; the rest downloads.",
    "celery_broker": "Celery broker URL (redis://... or amqp://...): this process counts the messages waiting in "
                     "each Celery queue every celery_poll_s and stores them as queue depths (/queues).",
    "celery_app": "App id of the polled Celery queues (the service.namespace the Celery workers send).",
    "celery_queues": "Celery queues to count (default: on Redis every queue kombu declared there, and celery; "
                     "on RabbitMQ celery).",
    "celery_poll_s": "Seconds between two counts of the Celery broker's queues.",
    "celery_result_backend": "The Celery app's result backend URL (redis://...): a re-run reads the task's name, "
                             "args and kwargs from its extended result (the app sets result_extended=True); "
                             "without it Celery re-runs are refused.",
    "command_ttl_s": "A command (abort, re-run) no runner's agent finished this many seconds after its last record "
                     "ends `expired` (docs/control.md).",
    "read_only": "Turn every action off: abort and re-run answer 403 and their buttons are hidden.",
}
