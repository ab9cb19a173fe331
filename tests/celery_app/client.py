"""Send tasks to the Celery app (instrumented too) and print their ids and states as JSON."""
import json
import time

from cel_tasks import add, flaky, parent, setup_otel

setup_otel("celery-client")
a, f, p = add.delay(1, 2), flaky.delay(3), parent.delay(3)
out = {"add": a.id, "flaky": f.id, "parent": p.id}
a.get(timeout=60)
try:
    f.get(timeout=60)
except Exception:
    pass
children = p.get(timeout=60)
for c in children:
    add.AsyncResult(c).get(timeout=60)
out["children"] = children
out["states"] = {k: add.AsyncResult(v).state for k, v in out.items() if isinstance(v, str)}
time.sleep(1)
print(json.dumps(out))
