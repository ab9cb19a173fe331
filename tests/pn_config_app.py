"""A real pynenc 0.4 run (Python 3.12, tasktrail's exporter on) for the config test.

Runs the app of tests/pn_config_tasks.py with its ThreadRunner in this process, prints (one JSON line,
step "first") what pynenc itself holds: the app's components and app.conf, the runner's id and
runner.conf, each task's task.conf; waits for a file `go`, changes one value of each (app.conf.logging_level,
runner.conf.runner_loop_sleep_time_sec, charge.conf.max_retries), prints step "changed", waits for `stop`.
"""
import json
import os
import threading
import time

from pynenc.conf.config_task import TaskOptionsJSONEncoder

from pn_config_tasks import app, charge, plain

ROLES = ("broker", "orchestrator", "state_backend", "serializer", "trigger", "runner", "client_data_store")


def as_json(value):
    """pynenc's own JSON of a config value (its TaskOptionsJSONEncoder), sets as sorted lists."""
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    return json.loads(json.dumps(value, cls=TaskOptionsJSONEncoder))


def fields(conf, skip=()):
    return {f: as_json(getattr(conf, f)) for f in conf.all_fields if f not in skip}


def held():
    """What pynenc holds, read the way pynmon reads it (component instances' classes, the conf objects)."""
    settings = fields(app.conf, skip={f"{r}_cls" for r in ROLES} | {"app_id"})
    settings.update(fields(app.orchestrator.conf))
    return {"app_id": app.app_id,
            "components": {r: type(getattr(app, r)).__name__ for r in ROLES},
            "settings": settings,
            "runner": {"id": app.runner.runner_id, "class": type(app.runner).__name__,
                       "settings": fields(app.runner.conf)},
            "tasks": {str(t.task_id): fields(t.conf) for t in (charge, plain)}}


def say(step, **kw):
    print(json.dumps({"step": step, **kw}), flush=True)


def wait_for(name):
    while not os.path.exists(name):
        time.sleep(0.05)


if __name__ == "__main__":
    threading.Thread(target=app.runner.run, daemon=True).start()
    while not app.runner.running:
        time.sleep(0.01)
    assert charge("ann", 5).result == 5 and plain(2).result == 4
    say("first", **held())
    wait_for("go")
    app.conf.logging_level = "debug"
    app.runner.conf.runner_loop_sleep_time_sec = 0.02
    charge.conf.max_retries = 5
    say("changed", **held())
    wait_for("stop")
    app.runner.stop_runner_loop()
    time.sleep(0.5)
    from tasktrail.proto.pynenc import exporter
    ex = exporter()
    ex.flush()
    say("done", stats=vars(ex.stats))
