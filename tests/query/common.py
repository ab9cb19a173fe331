"""What the read-model tests share: a fixed clock and the time helpers the scenarios are written in."""
from datetime import datetime, timedelta, timezone

# The services' clock (naive UTC) and the scenarios' "now": in the past, so ingest takes every record
# as sent (none is over a day ahead of the wall clock).
NOW = datetime(2026, 6, 1, 12, 0, 0)


def ago(seconds: float) -> datetime:
    """`seconds` before NOW, as the aware datetime the emitter takes."""
    return (NOW - timedelta(seconds=seconds)).replace(tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    """A time as the API writes it (RFC 3339 UTC, microseconds)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
