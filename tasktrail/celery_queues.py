"""Celery's queue depths, polled by tasktrail itself (`tasktrail serve --celery-broker URL`).

Celery workers send no queue figures, but their broker holds them. With `--celery-broker`, the server (or
`tasktrail ingest`) asks the broker every `--celery-poll-interval` seconds how many messages wait in each
queue and stores one `tasktrail.queue.depth` record per queue for the app `--celery-app` (the app id the
Celery instrumentation sends: its `service.namespace`). The records take the path every record takes:
they are written as an OTLP/JSON logs request and handed to the ingestor (decode, map, the one writer).

- Redis (`redis://`, `rediss://`): Celery's queue is a Redis list named after the queue; its depth is the
  LLEN of that key (plus the keys of its priority steps, `<queue>\\x06\\x16<n>`, when priorities are used).
  The queues are `--celery-queues`, else every queue kombu declared on that database
  (its `_kombu.binding.*` sets) and `celery`.
- RabbitMQ (`amqp://`, `pyamqp://`): a passive `queue.declare` of each of `--celery-queues` (default
  `celery`) answers its message count and its consumer count; a queue that does not exist is skipped.
Consumers: RabbitMQ's consumer count rides on the record; the workers that took work from a queue lately
are its consumers by their work (query/queues.py). Needs kombu (and redis for Redis), which Celery brings.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from typing import Optional, Sequence

from tasktrail.proto import names as n

log = logging.getLogger("tasktrail.celery")
_SEP = "\x06\x16"          # kombu's separator in binding members and priority queue keys
_PRIORITY_STEPS = (3, 6, 9)  # kombu's Redis priority steps past 0 (0 is the plain key)


def _kv(key: str, value) -> dict:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        value = str(value)
    return {"key": key, "value": {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value}}


def depth_request(app_id: str, depths: dict, counts: dict, reporter: str, now_ns: Optional[int] = None) -> bytes:
    """One OTLP/JSON logs request: a tasktrail.queue.depth record per queue of `depths` ({queue: messages}),
    with the broker's consumer count from `counts` where it has one; `reporter` is the poller's context id."""
    now_ns = now_ns or time.time_ns()
    records = []
    for queue, depth in sorted(depths.items()):
        attrs = [_kv(n.TT_QUEUE_NAME, queue), _kv(n.TT_QUEUE_PENDING, int(depth)), _kv(n.TT_RUNNER_ID, reporter),
                 _kv(n.TT_RUNNER_CLASS, "CeleryBrokerPoller"), _kv(n.TT_RECORD_ID, uuid.uuid4().hex)]
        if counts.get(queue) is not None:
            attrs.append(_kv(n.TT_QUEUE_CONSUMER_COUNT, int(counts[queue])))
        records.append({"timeUnixNano": str(now_ns), "eventName": n.EV_QUEUE_DEPTH,
                        "body": {"stringValue": n.EV_QUEUE_DEPTH}, "attributes": attrs})
    res = [_kv(n.SERVICE_NAMESPACE, app_id), _kv(n.SERVICE_NAME, "tasktrail-celery-poller"),
           _kv(n.REVISION, n.TASKTRAIL_V1)]
    return json.dumps({"resourceLogs": [{"resource": {"attributes": res}, "scopeLogs": [
        {"scope": {"name": n.TT_SCOPE}, "logRecords": records}]}]}).encode()


class CeleryBroker:
    """Counts Celery's messages on one broker URL (module doc). `count()` is blocking (run it off the loop)."""

    def __init__(self, url: str, queues: Sequence[str] = ()) -> None:
        from kombu import Connection  # Celery's own transport library
        self.url, self.queues = url, tuple(queues)
        self.redis = url.split(":", 1)[0] in ("redis", "rediss")
        self.conn = Connection(url, connect_timeout=5)

    def _redis_queues(self, client) -> list[str]:
        found = {"celery"}
        for key in client.scan_iter(match="_kombu.binding.*", count=500):
            for member in client.smembers(key):
                found.add(member.decode("utf-8", "replace").split(_SEP)[-1])
        return sorted(q for q in found if q)

    def count(self) -> tuple[dict, dict]:
        """({queue: messages waiting}, {queue: consumers the broker counts}) now."""
        channel = self.conn.default_channel
        if self.redis:
            client = channel.client
            queues = self.queues or self._redis_queues(client)
            pipe = client.pipeline()
            for q in queues:
                for key in [q] + [f"{q}{_SEP}{p}" for p in _PRIORITY_STEPS]:
                    pipe.llen(key)
            lens = pipe.execute()
            k = 1 + len(_PRIORITY_STEPS)
            return {q: sum(lens[i * k:(i + 1) * k]) for i, q in enumerate(queues)}, {}
        depths, consumers = {}, {}
        for q in self.queues or ("celery",):
            try:
                _, messages, count = channel.queue_declare(queue=q, passive=True)
            except Exception as exc:  # no such queue: the channel is closed, open a new one next time
                log.debug("celery queue %s: %s", q, exc)
                self.conn.release()
                from kombu import Connection
                self.conn = Connection(self.url, connect_timeout=5)
                channel = self.conn.default_channel
                continue
            depths[q], consumers[q] = messages, count
        return depths, consumers

    def close(self) -> None:
        self.conn.release()


async def poll(ingestor, url: str, app_id: str, queues: Sequence[str], every_s: float, stop: asyncio.Event) -> None:
    """Count and store every `every_s` seconds until `stop`; a failing broker is logged (its first failure
    and every hundredth) and tried again at the next interval."""
    loop = asyncio.get_running_loop()
    reporter = f"celery-broker-poller@{socket.gethostname()}-{os.getpid()}"
    broker, failures = None, 0
    while not stop.is_set():
        try:
            if broker is None:
                broker = await loop.run_in_executor(None, CeleryBroker, url, queues)
            depths, counts = await loop.run_in_executor(None, broker.count)
            if depths:
                await ingestor.export("logs", depth_request(app_id, depths, counts, reporter), "json", "celery-broker")
            failures = 0
        except Exception as exc:
            failures += 1
            if failures == 1 or failures % 100 == 0:
                log.warning("celery broker %s: cannot count its queues (%s); trying again every %g s",
                            _safe(url), exc, every_s)
            if broker is not None:
                await loop.run_in_executor(None, broker.close)
                broker = None
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except asyncio.TimeoutError:
            pass
    if broker is not None:
        broker.close()


def _safe(url: str) -> str:
    """The broker URL without its password, for logs."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return url if not parts.password else url.replace(f":{parts.password}@", ":***@", 1)
