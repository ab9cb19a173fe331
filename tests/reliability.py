"""What the reliability tests share: numbered requests whose records can be counted back, and the
recorder that turns what they tried into docs/reliability.md."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from .helpers import PB  # noqa: F401  (the reliability tests import it from here)

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def numbered_request(i: int, records: int = 50, pad: int = 0) -> bytes:
    """An OTLP logs request whose `records` lines say `req-<i>-<j>`; `pad` random bytes per line
    (incompressible, to fill a disk)."""
    res = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value="reliability"))])
    lines = []
    for j in range(records):
        body = f"req-{i}-{j}" + ((" " + os.urandom(pad // 2).hex()) if pad else "")
        lines.append(logs_pb2.LogRecord(time_unix_nano=1_790_000_000_000_000_000 + i * 1000 + j,
                                        severity_number=9, body=common_pb2.AnyValue(string_value=body)))
    req = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=res, scope_logs=[logs_pb2.ScopeLogs(log_records=lines)])])
    return req.SerializeToString()


def stored_lines(srv) -> dict[int, int]:
    """{request number: lines stored} read back through the SQL endpoint."""
    q = ("select split_part(body, '-', 2)::INTEGER AS i, count(*) from log_records "
         "where starts_with(body, 'req-') group by 1")
    r = httpx.post(srv.api + "/sql", json={"sql": q}, timeout=60).json()
    return {int(i): int(n) for i, n in r["rows"]}


@dataclass
class Recorder:
    """Rows of docs/reliability.md: what was tried, how often, and what came of it."""
    rows: list = field(default_factory=list)
    sections: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, section: str, what: str, tries: int, result: str) -> None:
        with self.lock:
            self.rows.append((section, what, tries, result))
            self.sections.add(section)

    def render(self) -> str:
        out = ["# Reliability: what was tried and what came of it",
               "",
               "Written by the test suite (test_reliability, test_bad_input, test_fuzz, test_openapi, test_security,",
               "test_hosts, test_slow_clients, test_session, test_ui_login, test_ducklake, test_values, "
               "test_read_limits) on every full green run; each row is one test's own count, not a claim made by hand.",
               ""] + DELIVERY_RULES + connection_limits() + read_limits()
        for section in ("Faults and load", "Bad input", "Fuzzing", "API", "Security", "Read limits"):
            rows = [r for r in self.rows if r[0] == section]
            if not rows:
                continue
            out += [f"## {section}", "", "| tried | times | result |", "|---|---|---|"]
            out += [f"| {what} | {tries} | {result} |" for _, what, tries, result in rows]
            out.append("")
        return "\n".join(out)


# The rules the "Bad input" rows below put to the test (test_delivery_bodies, test_delivery_times).
DELIVERY_RULES = [
    "## Delivery: what is kept, what is refused",
    "",
    "One bad record never costs the good ones of its request, and nothing acknowledged is lost later:",
    "",
    "- A record whose time cannot be real is refused alone: before 2000-01-01 (milliseconds, seconds or",
    "  microseconds in a `*_unix_nano` field, which would otherwise be stored in 1970, drawn as a 1 µs task and",
    "  removed by the next retention pass) or more than a day ahead of the server's clock. The answer is",
    "  200 / OK with OTLP's `partial_success`: the count refused and a message naming each record (path, event",
    "  or span name, invocation) and the unit it likely is. The rest of the request is stored.",
    "- Invalid UTF-8 in a string (protobuf's parser refuses the whole request for it) is replaced with U+FFFD,",
    "  as opentelemetry-proto recommends, and the record stored; `partial_success` names the field, 0 refused.",
    "  A body whose lengths are broken too cannot be trusted: 400 naming the string where parsing stopped.",
    "- gzip bodies are read to their last member; deflate is accepted zlib-wrapped or raw; the size limit",
    "  holds for the inflated total. An oversize body is read on and dropped (up to 4 × the limit, 256 MiB at",
    "  most, and 5 s) so a client that sends it whole before reading gets the 413, not a connection reset.",
    "- Retention counts from arrival as well as from a record's own time: a row goes only when both are older",
    "  than the window (`store/retention.py`). A record acknowledged today with a time in 2003 stays for the",
    "  whole window; no retention pass, not even the one at the next start, removes what it just acknowledged.",
    "",
]

def connection_limits() -> list[str]:
    """The limits on connections and Hosts (tasktrail/connections.py, tasktrail/hosts.py), defaults read
    from Settings so the page cannot disagree with the code; test_slow_clients and test_hosts try them."""
    from tasktrail.connections import ACCEPT_BATCH, LISTEN_QUEUE
    from tasktrail.settings import Settings as S
    rows = [
        ("open connections per listener (web, OTLP/HTTP, gRPC)", f"{S.max_connections}", "`--max-connections`",
         "HTTP: a new connection closes the one that has waited longest for a request head (slow or idle "
         "keep-alive); when every one is busy with a request, 503 + Retry-After: 1 and close. gRPC: new "
         "connections are closed (grpc's quota)"),
        ("request line and headers", f"{S.header_timeout_s:g} s from the connection (or the next request's first "
         "byte)", "`--header-timeout`", "408 in the listener's error shape if part of a head came, else close; "
         "bytes trickling in do not extend it. gRPC: the HTTP/2 handshake, then close"),
        ("request body", f"{S.body_timeout_s:g} s from the head (time the server pauses reading not counted)",
         "`--body-timeout`", "408 and close"),
        ("idle keep-alive connection", f"{S.keep_alive_timeout_s:g} s", "`--keep-alive-timeout`", "close"),
        ("file descriptors", f"listeners × (connections + {ACCEPT_BATCH}) + 256", "`ulimit -n`",
         "the soft limit is raised to fit (up to the hard limit); if the hard limit is smaller, the connection "
         "cap is lowered to fit and a warning says so, so accept() never runs out of files"),
        ("listen queue", f"{LISTEN_QUEUE} connections", "—", "the kernel's; costs the process no file"),
        ("Host header of a listener without a token", "localhost, 127.0.0.1, [::1], `--host`, `--public-url`'s "
         "host; with `--host 0.0.0.0`/`::` also IP literals and the hostname", "`--allowed-host` (repeatable; "
         "`*.domain`, `*`)", "400 in the listener's error shape, naming `--allowed-host`; with a token the "
         "token decides and any Host is served"),
    ]
    return ["## Limits: connections, request deadlines, Hosts (web and OTLP/HTTP ports)", "",
            "What one client can hold, and for how long. Counted in `tasktrail_http_connections_closed_total"
            "{listener, reason}`.", "", "| limit | default | flag | past it |", "|---|---|---|---|"] + \
        [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows] + [""]


def read_limits() -> list[str]:
    """The limits on reads (issue 15: SQL answers, live tails, time windows, /metrics), each with its flag
    and its default as tasktrail.settings has it; the "Read limits" rows below put them to the test."""
    from tasktrail.query.times import EARLIEST, LATEST
    from tasktrail.settings import Settings
    from tasktrail.web.tail_hub import POLL_LINES, RING_BYTES, TAKE_BYTES
    d = Settings()
    return [
        "## Limits on reads: SQL answers, live tails, time windows, /metrics",
        "",
        "| limit | flag | default | past it |",
        "|---|---|---|---|",
        f"| JSON bytes of one ad-hoc SQL answer | `--sql-max-bytes` | {d.sql_max_bytes:,} ({d.sql_max_bytes >> 20} MiB) "
        "| cut before the row that would pass it: `truncated: true`, `truncated_by: \"bytes\"` and a `notice`; rows are "
        "converted and encoded one by one as DuckDB streams them, inside the time limit |",
        f"| memory of the whole process (what a query builds outside DuckDB's buffers) | `--max-memory` | "
        f"{d.max_memory} | that query: 400 naming the flag; the server goes on |",
        f"| rows of one ad-hoc SQL answer | `--sql-max-rows` | {d.sql_max_rows:,} | cut: `truncated_by: \"rows\"` |",
        f"| time of one ad-hoc SQL query, reading and encoding included | `--sql-timeout` | {d.sql_timeout_s:g} s "
        "| 504 |",
        f"| ad-hoc SQL queries running at once | `--sql-concurrency` | {d.sql_concurrency} | another waits up to 2 s, "
        "then 429 with Retry-After |",
        f"| live log tails open at once | `--max-tails` | {d.max_tails} | 429 with Retry-After |",
        f"| live log tails per client address | `--max-tails-per-client` | {d.max_tails_per_client} | 429 with "
        "Retry-After |",
        f"| times in `since`, `until` and cursors | — | {EARLIEST:%Y-%m-%d} … {LATEST:%Y-%m-%d} | clamped into the "
        "range; text that is no time: 400 naming the parameter |",
        "| `/metrics` without the API token | `--metrics-public` | off: private whenever `--api-token` is set | "
        "401 |",
        "",
        "- SQL that acts is refused before it runs: table functions only from a read-only list (generators, "
        "`unnest`, catalog introspection), and `checkpoint()`, `force_checkpoint()`, logging and profiling "
        "switches, `query()`, `setseed`, `nextval` and DuckLake's and postgres_scanner's writers by name, "
        "wherever they stand in the statement (`query/sql_guard.py`).",
        "- Every value of an answer is a readable cell: `infinity`, BC dates and years past 9999 as DuckDB "
        "writes them, nanosecond times, `NaN`/`Infinity`, integers past 64 bits as digits, UHUGEINT, BIT, "
        "TIME WITH TIME ZONE, INTERVAL and GEOMETRY as DuckDB's text (`query/sql_cells.py`).",
        f"- Live tails share one poller: one read of new lines (up to {POLL_LINES}, whole commits) per "
        "interval whatever the number of tails, kept encoded once in a ring of at most "
        f"{RING_BYTES >> 20} MiB that every tail walks at its reader's pace, matching its own filters; a tail "
        "that falls off the ring is ended with a comment and resumes with Last-Event-ID. A tail that stops "
        f"reading holds at most {TAKE_BYTES >> 10} KiB of its own.",
        f"- One query's memory is bounded, whatever it builds: DuckDB's memory limit covers its buffers, not a "
        "single value, and nothing interrupts a scalar while it builds one (a review measured `SELECT range(0, "
        "20000000)` at 36.8 s and 2.4 GB, `list_reduce` doubling a list at 4.5 GB, `damerau_levenshtein` of two "
        f"30,000-character strings at 7 GB). `--max-memory` ({d.max_memory} by default; at least "
        "`--duckdb-memory-limit` + 2 GiB; 0 for none) caps the process's data segment (RLIMIT_DATA): past it the "
        "allocation fails, the query answers 400 naming the flag, and the server goes on, because DuckDB's "
        "jemalloc runs with `retain:false` and its background threads, and glibc with one malloc arena and a "
        "fixed mapping threshold (4 MiB), so the address space a failed query "
        "reached is given back, within jemalloc's decay time of about 10 s (without them a 3 GB cap left 2.86 GB taken and every OTLP export refused after "
        "seven such queries; with them 1.43 GB, its level at start, and every export stored). While such a query "
        "holds memory, other requests of that moment can fail too (503 with Retry-After for ingest; nothing "
        "acknowledged is lost). The one arena costs ingest 5–7 % (B1, quiet machine); `--max-memory 0` keeps "
        "the allocators' defaults. `tasktrail/memory_cap.py`.",
        f"- Before that, the values one number sizes — `range`/`generate_series` as lists, `repeat` of strings and "
        "lists, `list_resize`/`array_resize` — are refused in milliseconds by TEMP macros on each SQL reader "
        "that work out the size from the arguments: at most `--sql-max-bytes` characters or a sixteenth of it in "
        f"list elements ({d.sql_max_bytes // 16:,} by default); a 400 names the call, the size and the flag "
        "(`query/sql_values.py`). Rows of table functions (`FROM range(...)`) stream as before; a qualified "
        "call (`system.main.repeat`) is refused by name.",
        "- Not bounded by tasktrail: time inside one scalar. DuckDB cannot interrupt a scalar while it runs "
        "(`levenshtein` of two 100,000-character strings: 23 s in 160 MB): the answer is 504 at `--sql-timeout` "
        "and the reader stays busy until DuckDB returns; at most `--sql-concurrency` such reads run at once. "
        "DuckDB produces a query's rows a vector (2,048 rows) at a time, so one vector of large values exists "
        "whole inside DuckDB before the byte cap can refuse them; the answer stays under its cap.",
        "",
    ]


RECORDER = Recorder()
EXPECTED_SECTIONS = {"Faults and load", "Bad input", "Fuzzing", "API", "Security", "Read limits"}
