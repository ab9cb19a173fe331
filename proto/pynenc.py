"""The pynenc exporter: every pynenc app observable in tasktrail with one setting.

    pip install "tasktrail[emitter]"          # beside pynenc 0.4 (Python 3.12)
    export TASKTRAIL_ENDPOINT=http://127.0.0.1:4317   # (TASKTRAIL_TOKEN, TASKTRAIL_PROTOCOL optional)

pynenc loads the `pynenc.plugins` entry point `tasktrail` in every process it starts; with
TASKTRAIL_ENDPOINT set, that installs hooks on pynenc's choke points (reference §7) and sends
tasktrail.v1 through the emitter:

- every status transition, from `BaseStateBackend.add_histories` / `add_history` (the writers of
  history), with the runner context that made it, the owner, and for REGISTERED the task, parent,
  parent event, workflow identity, the arguments preview (`str(call.arguments)`, which honours
  `argument_print_mode`) and pynenc's call id (proto/pynenc_calls.py); results and exceptions ride on the
  final transition, a retried attempt's exception on its RETRY;
- runner contexts (`store_runner_context`), heartbeats (`register_runner_heartbeats`), the end of a
  runner's loop (`BaseRunner.on_stop`) and the end of a process's ExternalRunner (at exit);
- every atomic-service claim decision, the ones pynenc drops too (`decide_atomic_service_claim`),
  and execution windows (`record_atomic_service_execution_start` / `finalize_...`);
- trigger events and runs (`BaseTrigger.store_event` / `store_trigger_run`);
- each runner's queue depths, pynenc's own broker counts every TASKTRAIL_QUEUE_INTERVAL s (proto/pynenc_queues.py);
- the app's log lines (its logger `pynenc.<app_id>`), each tied to its invocation, task and runner
  context (`LogForwarder`; TASKTRAIL_LOGS=off keeps them out);
- with TASKTRAIL_AGENT (tasktrail's web address), tasktrail's abort and re-run carried out by each runner
  (proto/pynenc_agent.py, docs/control.md).

Hooks never raise into pynenc and never block it: records go to the emitter's bounded queue (50,000
records; proto/otlp_sender.py sends them); when it is full the record is dropped and counted
(`exporter().stats`). `install(endpoint=...)` does the same from code.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import traceback as tb
from typing import Any, Callable, Optional

from .emitter import Emitter, Runner
from .pynenc_calls import call_id as _call_id
from .pynenc_hooks import after, before, on_init
from .pynenc_state import Lru as _Lru, Stats

log = logging.getLogger("tasktrail.pynenc")
ENV_ENDPOINT, ENV_TOKEN, ENV_PROTOCOL = "TASKTRAIL_ENDPOINT", "TASKTRAIL_TOKEN", "TASKTRAIL_PROTOCOL"
# "off" keeps pynenc's log lines out of tasktrail (they are carried by default: LogForwarder).
ENV_LOGS = "TASKTRAIL_LOGS"
_MAX_CACHED = 50_000


class Exporter:
    """Turns pynenc's calls into tasktrail.v1 records, one emitter per pynenc app."""

    def __init__(self, endpoint: str, token: Optional[str] = None, protocol: str = "grpc",
                 max_queue: int = 50_000) -> None:
        self.endpoint, self.token, self.protocol, self.max_queue = endpoint, token, protocol, max_queue
        self.stats = Stats()
        self._emitters: dict[str, Emitter] = {}
        self._by_app: dict[int, tuple] = {}     # id(app) -> (app, its emitter): a transition's look-up
        self._lock = threading.Lock()
        self._invocations = _Lru(_MAX_CACHED)   # invocation id -> what REGISTERED should carry
        self._outcomes = _Lru(_MAX_CACHED)      # invocation id -> result / exception for its final status
        self._contexts = _Lru(_MAX_CACHED)      # runner id -> RunnerContext
        self._clients: list = []                 # (app, ExternalRunner context) of this process
        self._runners = _Lru(_MAX_CACHED)       # runner id -> the Runner that names its context

    # --- plumbing ------------------------------------------------------------------------
    def emitter(self, app) -> Emitter:
        """The emitter of pynenc app `app` (made on first use; kept per app object, then per app id)."""
        kept = self._by_app.get(id(app), (None, None))
        if kept[0] is app:
            return kept[1]
        app_id = getattr(app, "app_id", None) or "pynenc"
        # A forked worker keeps its parent's emitters: each sender starts over in the child with an empty
        # queue and threads of its own (proto/otlp_sender.py).
        em = self._emitters.get(app_id)
        if em is None:
            with self._lock:
                em = self._emitters.get(app_id)
                if em is None:
                    em = Emitter(self.endpoint, app_id, protocol=self.protocol, token=self.token,
                                 service_name="pynenc", max_queue_size=self.max_queue)
                    self._emitters[app_id] = em
        self._by_app[id(app)] = (app, em)
        return em

    def send(self, app, fn: Callable[[Emitter], None]) -> None:
        """Emit without ever raising into pynenc; a full queue drops and counts."""
        try:
            em = self.emitter(app)
            if em.queue_full():
                self._dropped()
                return
            fn(em)
            self.stats.emitted += 1
        except Exception as exc:  # observability must not break the runner
            self._failed(exc)

    def _dropped(self) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
            log.warning("tasktrail exporter: export queue full, %d records dropped so far "
                        "(tasktrail unreachable or slower than this app)", self.stats.dropped)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        if self.stats.errors <= 3:
            log.warning("tasktrail exporter: %s", exc)

    def flush(self, timeout_ms: int = 10_000) -> None:
        for em in list(self._emitters.values()):
            em.flush(timeout_ms)

    def runner(self, ctx) -> Optional[Runner]:
        """The Runner naming pynenc's RunnerContext `ctx` (kept per context: a transition's cost)."""
        if ctx is None:
            return None
        runner = self._runners.get(ctx.runner_id)  # a context's id names one class, host and pid
        # ... but not always one thread: pynenc 0.4 holds a ThreadRunner's context as two objects of one id
        # made in two threads, and its state backend keeps the one stored last: each record says its own.
        if runner is None or runner.thread_id != getattr(ctx, "thread_id", None):
            runner = self._runner_of(ctx)
            self._runners.put(ctx.runner_id, runner)
        return runner

    @staticmethod
    def _runner_of(ctx) -> Runner:
        parent = getattr(ctx, "parent_ctx", None)
        return Runner(ctx.runner_id, ctx.runner_cls, parent_id=parent.runner_id if parent else None,
                      hostname=getattr(ctx, "hostname", None) or None, pid=getattr(ctx, "pid", None) or None,
                      thread_id=getattr(ctx, "thread_id", None))

    def known(self, runner_id: str) -> Runner:
        """The context `runner_id` as this process knows it; for one it does not hold (a parent runner
        reporting its children's heartbeats: the children stored their contexts in their own processes),
        the id alone: no placeholder class, host or pid that would hide what the context said itself."""
        ctx = self._contexts.get(runner_id)
        if ctx is not None:
            return self.runner(ctx)
        return Runner(runner_id, None, hostname=None, pid=None)

    # --- hooks ---------------------------------------------------------------------------
    def on_upsert(self, backend, invocations) -> None:
        for inv in invocations:
            try:
                wf = getattr(inv, "workflow", None)
                self._invocations.put(inv.invocation_id, {
                    "task_id": str(inv.task.task_id),
                    "parent_invocation_id": getattr(inv, "parent_invocation_id", None),
                    "parent_event_id": getattr(inv, "parent_event_id", None),
                    "workflow_id": getattr(wf, "workflow_id", None),
                    "workflow_type": str(wf.workflow_type) if wf is not None else None,
                    "workflow_parent_id": getattr(wf, "parent_workflow_id", None),
                    "arguments": str(inv.call.arguments),
                    "call_id": _call_id(inv),
                })
            except Exception:
                self.stats.errors += 1

    def on_result(self, invocation_id, result) -> None:
        text = repr(result)
        self._outcomes.put(invocation_id, {"result": text if len(text) <= 2000 else text[:2000] + "..."})

    def on_exception(self, invocation_id, exception) -> None:
        self._outcomes.put(invocation_id, {
            "error_type": type(exception).__name__, "error_message": str(exception)[:2000],
            "error_traceback": "".join(tb.format_exception(type(exception), exception, exception.__traceback__))[-8000:],
        })

    def on_history(self, backend, invocation_ids, status_record, ctx) -> None:
        # The runner's hot path (issue 20): one emitter look-up and one queue check per call, no closures.
        status = status_record.status._name_   # Enum's own attribute (.name is a slower descriptor)
        owner, when, runner = status_record.runner_id, time.time_ns(), self.runner(ctx)
        for inv_id in invocation_ids:
            kw = self._invocations.get(inv_id) if status == "REGISTERED" else None
            outcome = self._outcomes.pop(inv_id, None) if status in ("SUCCESS", "FAILED", "RETRY") else None
            if outcome:
                kw = {**(kw or {"task_id": self._task_of(inv_id)}), **outcome}
                if status == "RETRY":
                    kw.pop("result", None)
            try:
                em = self.emitter(backend.app)
                if em.queue_full():
                    self._dropped()
                    continue
                if kw is None:  # most transitions: the task and owner only
                    em.transition(inv_id, status, runner, owner, self._task_of(inv_id), when)
                else:
                    em.status(inv_id, status, runner=runner, owner_runner_id=owner, timestamp=when, **kw)
                self.stats.emitted += 1
            except Exception as exc:  # observability must not break the runner
                self._failed(exc)

    def _task_of(self, inv_id) -> Optional[str]:
        return (self._invocations.get(inv_id) or {}).get("task_id")

    def on_context(self, backend, ctx) -> None:
        while ctx is not None:
            if ctx.runner_id not in self._contexts:
                self._contexts.put(ctx.runner_id, ctx)
                self.send(backend.app, lambda em, c=ctx: em.runner_started(self.runner(c)))
                if "External" in (ctx.runner_cls or "") and getattr(ctx, "pid", None) == os.getpid():
                    self._client(backend.app, ctx)
            ctx = getattr(ctx, "parent_ctx", None)

    def _client(self, app, ctx) -> None:
        """An ExternalRunner of this process (the context that submits work from a script or a web app): it
        is reported stopped when the process exits, so it does not read alive after it is gone. The exit
        hook is registered after the app's emitter (its OTel provider shuts down at exit too, and exit hooks
        run last-registered first), so the record still goes out."""
        if not self._clients:
            atexit.register(self.on_exit)
        self._clients.append((app, ctx))

    def on_exit(self) -> None:
        """This process ends: its ExternalRunner contexts stopped; what is queued is sent (at most 5 s)."""
        for app, ctx in self._clients:
            if getattr(ctx, "pid", None) != os.getpid():  # a forked child's copy of its parent's list
                continue
            self.send(app, lambda em, c=ctx: em.runner_stopped(self.runner(c)))
        self.flush(5000)

    def on_runner_stop(self, runner) -> None:
        """A runner's loop ended (pynenc's `BaseRunner.on_stop`): its context is stopped, not silent."""
        ctx = getattr(runner, "runner_context", None)
        if ctx is not None:
            self.send(runner.app, lambda em, c=ctx: em.runner_stopped(self.runner(c)))

    def on_heartbeats(self, orchestrator, runner_ids, can_run_atomic_service, consumed_queues) -> None:
        for rid in runner_ids:
            runner = self.known(rid)
            self.send(orchestrator.app, lambda em, r=runner: em.heartbeat(
                r, atomic_eligible=bool(can_run_atomic_service),
                consumed_queues=list(consumed_queues) if consumed_queues else None))

    def on_decision(self, app, claim) -> None:
        runner = self.known(claim.runner_id)
        self.send(app, lambda em: em.atomic_decision(
            str(claim.reason).upper(), runner=runner, cycle_start=claim.cycle_start, slot_start=claim.slot_start,
            slot_end=claim.slot_end, position=claim.runner_position, runner_count=claim.stable_runner_count,
            assigned_runner_id=claim.assigned_runner_id, message=claim.skip_message or None))

    def on_execution(self, orchestrator, run, start, end, status, reason) -> None:
        runner = self.known(run.runner_id)
        self.send(orchestrator.app, lambda em: em.atomic_execution(
            run.atomic_service_run_id, str(getattr(status, "value", status)).upper(), runner=runner,
            start=start or getattr(run, "started_at", None), end=end, reason=reason or None))

    def on_event(self, trigger, event) -> None:
        self.send(trigger.app, lambda em: em.event(
            event.event_id, event.event_code, event.payload,
            matched_condition_ids=list(event.matched_condition_ids or ()),
            valid_condition_ids=list(event.valid_condition_ids or ()),
            emitted_by_invocation_id=event.emitted_by_invocation_id, emitted_by_task_id=_s(event.emitted_by_task_id),
            emitted_by_runner_id=event.emitted_by_runner_context_id, timestamp=event.timestamp))

    def on_trigger_run(self, trigger, run) -> None:
        participants = [{k: _s(getattr(p, k, None)) for k in (
            "context_type", "condition_id", "valid_condition_id", "event_id", "source_invocation_id",
            "context_timestamp", "context_summary")} for p in (run.participants or ())]
        self.send(trigger.app, lambda em: em.trigger_run(
            run.trigger_run_id, trigger_id=run.trigger_id, task_id=_s(run.task_id_key), logic=_s(run.logic_value),
            condition_ids=list(run.condition_ids or ()), valid_condition_ids=list(run.valid_condition_ids or ()),
            event_ids=list(run.event_ids or ()), source_invocation_ids=list(run.source_invocation_ids or ()),
            triggered_invocation_id=run.triggered_invocation_id, arguments_preview=_s(run.arguments_preview),
            claimed_at=run.claimed_at, executed_at=run.executed_at, participants=participants,
            atomic_service_run_id=run.atomic_service_run_id, atomic_service_runner_id=run.atomic_service_runner_id))


def _s(v: Any) -> Optional[str]:
    if v is None:
        return None
    return v.isoformat() if hasattr(v, "isoformat") else str(getattr(v, "value", v))


_installed: Optional[Exporter] = None


def exporter() -> Optional[Exporter]:
    return _installed


def install(endpoint: Optional[str] = None, *, token: Optional[str] = None,
            protocol: Optional[str] = None) -> Exporter:
    """Hook pynenc (idempotent). Endpoint, token and protocol default to the TASKTRAIL_* variables."""
    global _installed
    if _installed is not None:
        return _installed
    endpoint = endpoint or os.environ.get(ENV_ENDPOINT)
    if not endpoint:
        raise ValueError(f"no tasktrail endpoint: pass one or set {ENV_ENDPOINT}")
    ex = Exporter(endpoint, token or os.environ.get(ENV_TOKEN), protocol or os.environ.get(ENV_PROTOCOL, "grpc"))
    _patch(ex)
    _installed = ex
    return ex


def install_from_env() -> Optional[Exporter]:
    """What the `pynenc.plugins` entry point runs: install only when TASKTRAIL_ENDPOINT is set."""
    if os.environ.get(ENV_ENDPOINT):
        return install()
    return None


def _patch_outcomes(ex: Exporter) -> None:
    """Results and exceptions, which ride on the final (or RETRY) transition that follows them."""
    from pynenc.orchestrator.base_orchestrator import BaseOrchestrator
    from pynenc.state_backend.base_state_backend import BaseStateBackend

    after(BaseStateBackend, "set_result", lambda self, invocation_id, result: ex.on_result(invocation_id, result))
    # A retry's exception is not stored by pynenc 0.4 ("TODO store Retry exception on Retry status"): taken
    # as set_invocation_retry is called, it rides on the RETRY transition that call makes.
    before(BaseOrchestrator, "set_invocation_retry",
            lambda self, invocation, exception, *a, **k: ex.on_exception(invocation.invocation_id, exception))
    after(BaseStateBackend, "set_exception",
           lambda self, invocation_id, exception, *a, **k: ex.on_exception(invocation_id, exception))


def _beside_runners(ex: Exporter) -> None:
    """What runs beside each pynenc runner: queue depths every TASKTRAIL_QUEUE_INTERVAL s
    (proto/pynenc_queues.py) and, with TASKTRAIL_AGENT, the agent of tasktrail's commands (proto/pynenc_agent.py)."""
    from .pynenc_agent import install as start_agents
    from .pynenc_queues import install as report_queue_depths
    report_queue_depths(ex)
    start_agents(ex)


def _patch(ex: Exporter) -> None:
    from pynenc.orchestrator import base_orchestrator
    from pynenc.orchestrator.base_orchestrator import BaseOrchestrator
    from pynenc.runner.base_runner import BaseRunner
    from pynenc.state_backend.base_state_backend import BaseStateBackend
    from pynenc.trigger.base_trigger import BaseTrigger

    _patch_outcomes(ex)
    from .pynenc_config import install as install_config
    ex.config = install_config(ex)  # app configuration, runner settings, task definitions
    after(BaseStateBackend, "upsert_invocations", lambda self, invocations: ex.on_upsert(self, invocations))
    after(BaseStateBackend, "store_runner_context", ex.on_context)  # (backend, ctx): with every transition
    after(BaseStateBackend, "add_histories",
           lambda self, invocations, status_record, runner_context:
           ex.on_history(self, [i.invocation_id for i in invocations], status_record, runner_context))
    after(BaseStateBackend, "add_history",
           lambda self, invocation_id, status_record, runner_context:
           ex.on_history(self, [invocation_id], status_record, runner_context))
    after(BaseRunner, "on_stop", lambda self: ex.on_runner_stop(self))
    # Abstract in pynenc: hooked on the concrete class when pynenc builds the component.
    orchestrator_hooks = {
        "register_runner_heartbeats": lambda self, runner_ids, can_run_atomic_service=False, consumed_queues=None:
            ex.on_heartbeats(self, runner_ids, can_run_atomic_service, consumed_queues),
        "record_atomic_service_execution_start": lambda self, run, started_at, status=None, reason="":
            ex.on_execution(self, run, started_at, None, status or "RUNNING", reason),
        "finalize_atomic_service_execution": lambda self, run, end_time, status, reason="":
            ex.on_execution(self, run, None, end_time, status, reason),
    }
    trigger_hooks = {
        "store_event": lambda self, event: ex.on_event(self, event),
        "store_trigger_run": lambda self, run: ex.on_trigger_run(self, run),
    }
    on_init(BaseOrchestrator, orchestrator_hooks)
    on_init(BaseTrigger, trigger_hooks)
    _beside_runners(ex)
    if os.environ.get(ENV_LOGS, "on").lower() not in ("0", "off", "false", "no"):
        from .pynenc_logs import forward_logs
        forward_logs(ex)

    decide = base_orchestrator.decide_atomic_service_claim
    if not getattr(decide, "__tasktrail__", False):
        def decide_and_export(*args, **kwargs):
            claim = decide(*args, **kwargs)  # arguments pass through untouched (they are keyword-only)
            try:
                ex.on_decision(_current_app.get("app"), claim)
            except Exception as exc:  # never into pynenc
                log.debug("tasktrail decision hook failed: %s", exc)
            return claim
        decide_and_export.__tasktrail__ = True
        base_orchestrator.decide_atomic_service_claim = decide_and_export
        # The decision needs the app; try_claim_atomic_service_run knows it.
        original_claim = BaseOrchestrator.try_claim_atomic_service_run

        def try_claim(self, *args, **kwargs):
            _current_app["app"] = self.app
            return original_claim(self, *args, **kwargs)

        try_claim.__tasktrail__ = True
        BaseOrchestrator.try_claim_atomic_service_run = try_claim


_current_app: dict = {}
