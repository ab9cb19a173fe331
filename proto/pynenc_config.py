"""The pynenc exporter's definitions: the app's configuration, each runner's settings, each task's options.

What pynenc holds (pynenc 0.4): the app's `app.conf` (ConfigPynenc: the component classes `*_cls` and the
settings) and its orchestrator's `app.orchestrator.conf` (blocking control, auto-purge hours); a runner's
`runner.conf` (ConfigRunner or its subclass: loop sleep, threads, processes, queues); a task's `task.conf`
(ConfigTask: concurrency control, key arguments, retries, retry-for exceptions, parallel batch size, call
result cache, queue, priority). Each is read with cistell's `safe_dict()` (secret fields come as
"<secret>"), made JSON-plain, and sent as tasktrail.app.config / tasktrail.runner.config /
tasktrail.task.definition through the emitter (which masks secret-looking values).

When: the app's configuration and the runner's settings when a runner starts (`BaseRunner.on_start`) or a
process first stores a runner context; a task's definition the first time this process registers an
invocation of it. Each is sent again only when its value changed, which is looked at, at most every
`CHECK_EVERY_S`, from the hooks that run anyway (registrations, runner contexts, each runner loop
iteration; and once more when a runner stops): between two looks the cost is one clock read (~2 µs); a
look reads the app's and the runner's conf (~0.3 ms) and the options of `TASKS_PER_LOOK` tasks in turn.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from enum import Enum
from typing import Any

log = logging.getLogger("tasktrail.pynenc")

CHECK_EVERY_S = 2.0
TASKS_PER_LOOK = 20   # tasks whose options one look reads (in turn): ~60 µs each in pynenc 0.4
_COMPONENTS = ("broker", "orchestrator", "state_backend", "serializer", "trigger", "runner", "client_data_store")


def plain(value: Any) -> Any:
    """A config value as JSON-plain data: an exception class as "module.Name" (as pynenc's own
    TaskOptionsJSONEncoder writes it), an enum as its value, tuples and sets as lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__name__}"
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _fields(conf) -> dict:
    return {k: plain(v) for k, v in conf.safe_dict().items()}


def app_config(app) -> tuple[dict, dict]:
    """(components, settings) of a pynenc app: components {role: class name} from app.conf's `*_cls`;
    settings every other field of app.conf, and the orchestrator's (app.orchestrator.conf)."""
    conf = _fields(app.conf)
    components = {role: conf.pop(f"{role}_cls") for role in _COMPONENTS if f"{role}_cls" in conf}
    conf.pop("app_id", None)
    conf.update(_fields(app.orchestrator.conf))
    return components, conf


def runner_settings(runner) -> dict:
    """Every field of a pynenc runner's `runner.conf`."""
    return _fields(runner.conf)


def task_options(task) -> dict:
    """Every field of a pynenc task's `task.conf` (its options over the app's task defaults)."""
    return _fields(task.conf)


class ConfigReporter:
    """Sends definitions once and again when they change (per process: a new process sends its own)."""

    def __init__(self, ex, every_s: float = CHECK_EVERY_S) -> None:
        self.ex, self.every_s = ex, every_s
        self._sent: dict = {}                    # (app id, kind, subject) -> JSON last sent
        self._tasks: dict = {}                   # app id -> {task id: task}
        self._runners: dict = {}                 # app id -> the runner this process runs (weak)
        self._looked: dict = {}                  # app id -> monotonic time of the last look
        self._turn: dict = {}                    # app id -> the first task the next look reads
        self._lock = threading.Lock()

    # --- hooks -------------------------------------------------------------------------
    def on_runner_start(self, runner) -> None:
        """A runner starts in this process: its settings and the app's configuration go out now."""
        app = runner.app
        self._runners[app.app_id] = weakref.ref(runner)
        self.look(app, force=True)

    def on_tasks(self, app, tasks) -> None:
        """Invocations of `tasks` were registered: a task not seen before has its definition sent."""
        known = self._tasks.get(app.app_id)
        if known is None:
            known = self._tasks.setdefault(app.app_id, {})
        new = [t for t in tasks if str(t.task_id) not in known]
        for task in new:
            known[str(task.task_id)] = task
            self._send_task(app, task)
        self.look(app)

    def look(self, app, force: bool = False) -> None:
        """Send what changed since it was last sent (at most every `every_s`, unless `force`)."""
        now = time.monotonic()
        app_id = app.app_id
        if not force and now - self._looked.get(app_id, -1e9) < self.every_s:
            return
        with self._lock:
            self._looked[app_id] = now
        try:
            self._send_app(app)
            ref = self._runners.get(app_id)
            runner = ref() if ref is not None else None
            if runner is not None:
                self._send_runner(app, runner)
            for task in self._next_tasks(app_id):
                self._send_task(app, task)
        except Exception as exc:  # never into pynenc
            self.ex.stats.errors += 1
            if self.ex.stats.errors <= 3:
                log.warning("tasktrail exporter: config report failed: %s", exc)

    def _next_tasks(self, app_id: str) -> list:
        """The next `TASKS_PER_LOOK` known tasks of the app, in turn (a look stays cheap with many tasks)."""
        tasks = list(self._tasks.get(app_id, {}).values())
        if len(tasks) <= TASKS_PER_LOOK:
            return tasks
        start = self._turn.get(app_id, 0) % len(tasks)
        self._turn[app_id] = start + TASKS_PER_LOOK
        return (tasks[start:] + tasks[:start])[:TASKS_PER_LOOK]

    # --- sending -----------------------------------------------------------------------
    def _changed(self, key: tuple, value) -> bool:
        text = json.dumps(value, sort_keys=True, default=str)
        if self._sent.get(key) == text:
            return False
        self._sent[key] = text
        return True

    def _reporter(self, app):
        ref = self._runners.get(app.app_id)
        runner = ref() if ref is not None else None
        return self.ex.runner(runner.runner_context) if runner is not None else None

    def _send_app(self, app) -> None:
        components, settings = app_config(app)
        if self._changed((app.app_id, "app", app.app_id), [components, settings]):
            by = self._reporter(app)
            self.ex.send(app, lambda em: em.app_config(settings, components=components, runner=by))

    def _send_runner(self, app, runner) -> None:
        settings = runner_settings(runner)
        if self._changed((app.app_id, "runner", runner.runner_id), settings):
            ctx = self.ex.runner(runner.runner_context)
            self.ex.send(app, lambda em: em.runner_config(settings, runner=ctx))

    def _send_task(self, app, task) -> None:
        options = task_options(task)
        task_id = str(task.task_id)
        if self._changed((app.app_id, "task", task_id), options):
            by = self._reporter(app)
            self.ex.send(app, lambda em: em.task_definition(task_id, options, runner=by))


def install(ex) -> ConfigReporter:
    """Hook pynenc so `ex` (proto/pynenc.Exporter) reports definitions; returns the reporter. The hooks
    share the exporter's wrappers (proto/pynenc_hooks.py), under their own mark."""
    from pynenc.runner.base_runner import BaseRunner
    from pynenc.state_backend.base_state_backend import BaseStateBackend

    from .pynenc_hooks import after

    def _after(cls, name: str, hook) -> None:
        after(cls, name, hook, mark="__tasktrail_config__")

    rep = ConfigReporter(ex)
    _after(BaseRunner, "on_start", lambda self: rep.on_runner_start(self))
    _after(BaseRunner, "on_stop", lambda self: rep.look(self.app, force=True))  # a change made just before
    # The runner's loop, every iteration: a look costs one clock read between looks.
    _after(BaseRunner, "_check_atomic_services", lambda self: rep.look(self.app))
    _after(BaseStateBackend, "upsert_invocations",
           lambda self, invocations: rep.on_tasks(self.app, [i.task for i in invocations]))
    _after(BaseStateBackend, "store_runner_context", lambda self, ctx: rep.look(self.app))
    return rep
