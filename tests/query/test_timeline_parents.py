"""query/timeline.py: a worker's lane names its parent's class, also when the parent ran no work of its own
(rustvello's PersistentTokioRunner, pynenc's PersistentProcessRunner: only their workers have lanes)."""
from tasktrail.proto.emitter import Runner

from .common import NOW, ago, iso

PARENT = Runner("P1", "PersistentTokioRunner", hostname="h1", pid=10)
WORKER = Runner("P1-W1", "PersistentTokioWorker", parent_id="P1", hostname="h1", pid=10)
CLIENT = Runner("C1", "ExternalRunner", hostname="h1", pid=11)


def test_a_worker_lane_names_its_parents_class(local):
    em = local.emitter("tp", CLIENT)
    em.runner_started(PARENT, timestamp=ago(100))
    em.runner_started(WORKER, timestamp=ago(100))
    em.status("tp-a", "REGISTERED", task_id="app.a", timestamp=ago(90))
    em.status("tp-a", "RUNNING", runner=WORKER, attempt=0, timestamp=ago(80))
    em.status("tp-a", "SUCCESS", runner=WORKER, timestamp=ago(70))
    em.shutdown()
    tl = local.service(clock=lambda: NOW).timeline(since=iso(ago(200)), until=iso(ago(0)))
    lanes = {ln["runner_id"]: ln for ln in tl["lanes"]}
    assert "P1" not in lanes  # the parent ran nothing itself
    assert (lanes["P1-W1"]["parent_runner_id"], lanes["P1-W1"]["parent_runner_class"]) == ("P1", "PersistentTokioRunner")
    assert lanes["C1"]["parent_runner_class"] is None
