"""A known scenario sent with the tasktrail.v1 emitter, and the figures a user would expect from it,
worked out here from the scenario itself (not from tasktrail):

- task `shop.pay`: 40 standalone runs, durations 0.5 + 0.05·i s; i ≡ 3 (mod 8) fail with ValueError
  (5); i ≡ 7 (mod 10) retry once after a KeyError (4);
- workflow `shop.checkout`: 10 runs, each a root, one `shop.reserve` and two `shop.ship`; run 7's
  ships wait 28.3 s PENDING (where it lost its time); run 0 starts a sub-workflow `shop.refund`.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tasktrail.proto.emitter import Emitter, Runner

PAY_FAILED = [i for i in range(40) if i % 8 == 3]
PAY_RETRIED = [i for i in range(40) if i % 10 == 7]
RUNS = 10
SLOW_RUN = 7


def pay_duration(i: int) -> float:
    return 0.5 + 0.05 * i


def quantile_cont(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def send(endpoint: str | None, token: str = "tok123", *, base: datetime | None = None, connect=None) -> dict:
    """Emit the scenario to `endpoint` over OTLP, or through `connect(app_id, runner)` (an Emitter, e.g.
    tests/helpers.LocalStore.emitter); returns {"base": t0, "runs": {workflow_id: {...expected...}}}."""
    t0 = base or (datetime.now(timezone.utc) - timedelta(hours=2)).replace(microsecond=0)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    r = Runner("shop-runner-1", "PersistentProcessRunner", hostname="h1", pid=4242)
    em = (connect("shop", r) if connect else
          Emitter(endpoint=endpoint, app_id="shop", runner=r, protocol="http/protobuf", token=token))
    em.runner_started(timestamp=at(0))
    for i in range(40):
        inv, s = f"pay-{i:02d}", i * 60.0
        em.status(inv, "REGISTERED", task_id="shop.pay", timestamp=at(s))
        em.status(inv, "RUNNING", attempt=0, timestamp=at(s + 1))
        if i in PAY_RETRIED:
            em.status(inv, "RETRY", error_type="KeyError", error_message=f"no stock {i}", timestamp=at(s + 1.2))
            em.status(inv, "RUNNING", attempt=1, timestamp=at(s + 1.3))
        end = at(s + 1 + pay_duration(i))
        if i in PAY_FAILED:
            em.status(inv, "FAILED", error_type="ValueError", error_message=f"card declined {i}", timestamp=end)
        else:
            em.status(inv, "SUCCESS", timestamp=end)
    runs = {}
    for k in range(RUNS):
        s = 3000.0 + k * 200
        wid = f"wf-{k}"
        wf = {"workflow_id": wid, "workflow_type": "shop.checkout"}
        em.status(wid, "REGISTERED", task_id="shop.checkout", timestamp=at(s), **wf)
        em.status(wid, "RUNNING", attempt=0, timestamp=at(s + 0.1), **wf)
        members = {}
        res = f"{wid}-reserve"
        em.status(res, "REGISTERED", task_id="shop.reserve", parent_invocation_id=wid, timestamp=at(s + 0.2), **wf)
        em.status(res, "PENDING", timestamp=at(s + 0.3), **wf)
        em.status(res, "RUNNING", attempt=0, timestamp=at(s + 0.5), **wf)
        em.status(res, "SUCCESS", timestamp=at(s + 1.5), **wf)
        members[res] = {"task_id": "shop.reserve", "intervals": [("REGISTERED", 0.2, 0.3), ("PENDING", 0.3, 0.5),
                                                                  ("RUNNING", 0.5, 1.5)]}
        wait = 28.3 if k == SLOW_RUN else 0.0
        for x in ("a", "b"):
            sh = f"{wid}-ship-{x}"
            em.status(sh, "REGISTERED", task_id="shop.ship", parent_invocation_id=wid, timestamp=at(s + 1.6), **wf)
            em.status(sh, "PENDING", timestamp=at(s + 1.7), **wf)
            em.status(sh, "RUNNING", attempt=0, timestamp=at(s + 2.0 + wait), **wf)
            em.status(sh, "SUCCESS", timestamp=at(s + 4.0 + wait), **wf)
            members[sh] = {"task_id": "shop.ship", "intervals": [("REGISTERED", 1.6, 1.7),
                                                                  ("PENDING", 1.7, 2.0 + wait),
                                                                  ("RUNNING", 2.0 + wait, 4.0 + wait)]}
        if k == 0:
            sub = "wf-0-refund"
            sw = {"workflow_id": sub, "workflow_type": "shop.refund", "workflow_parent_id": wid}
            em.status(sub, "REGISTERED", task_id="shop.refund", parent_invocation_id=wid, timestamp=at(s + 1.55), **sw)
            em.status(sub, "RUNNING", attempt=0, timestamp=at(s + 1.56), **sw)
            em.status(sub, "SUCCESS", timestamp=at(s + 1.58), **sw)
        end = 4.1 + wait
        em.status(wid, "SUCCESS", timestamp=at(s + end), **wf)
        runs[wid] = {"start": at(s), "offset": s, "duration_s": end - 0.1, "members": members,
                     "root_intervals": [("REGISTERED", 0.0, 0.1), ("RUNNING", 0.1, end)], "end": end}
    em.runner_stopped(timestamp=at(5000))
    assert em.flush()
    em.shutdown()
    return {"base": t0, "runs": runs}


def expected_histogram(run: dict, categories=("PENDING", "RUNNING"), size: float = 0.25) -> dict:
    """Per task, in each bucket [k·size, (k+1)·size) of the run's window, the intervals of the chosen
    categories (pynmon's: RETRY counts as PENDING) that overlap it; a zero-length one counts where it is."""
    cat = {"REGISTERED": "REGISTERED", "PENDING": "PENDING", "RUNNING": "RUNNING"}
    n = int(-(-run["end"] // size))
    out: dict = {}
    rows = [(m["task_id"], iv) for m in run["members"].values() for iv in m["intervals"]]
    rows += [("shop.checkout", iv) for iv in run["root_intervals"]]
    for task, (status, a, b) in rows:
        if cat[status] not in categories:
            continue
        counts = out.setdefault(task, [0] * n)
        for k in range(n):
            lo, hi = k * size, (k + 1) * size
            if (a < hi and b > lo) or (a == b and lo <= a < hi):
                counts[k] += 1
    return out
