"""The timeline options against a real pynenc 0.4 run (Python 3.12, tasktrail's exporter on; memory and
SQLite backends): pynenc's own core tasks (its `app.tasks` under `pynenc.core_tasks.`, what pynmon's
show_system=0 hides) are hidden by show_system=0 and only they; the true peak of RUNNING is the one
counted from pynenc's own state-backend histories, and no more than the ThreadRunner's threads."""
import json
import os
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .helpers import require_python312, start_server, wait_until
from .timeline_options_fill import brute_peak

PY312 = require_python312()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_pynenc_core_tasks_hidden_and_peak_from_pynencs_histories(tmp_path, backend):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    try:
        env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
               "PN_BACKEND": backend, "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(Path(__file__).parent)}
        proc = subprocess.run([PY312, str(Path(__file__).with_name("pn_timeline_app.py"))], capture_output=True,
                              text=True, timeout=240, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        core = set(theirs["core_invocations"])  # pynenc's own list: the two called and any its cron ran
        assert {i for i, t in theirs["tasks"].items() if t in theirs["core_task_ids"]} <= core
        assert len(theirs["tasks"]) == 17
        times = [datetime.fromisoformat(t) for h in theirs["histories"].values() for _, t in h]
        window = {"app": f"pn-tl-{backend}", "since": (min(times) - timedelta(seconds=5)).isoformat(),
                  "until": (max(times) + timedelta(seconds=5)).isoformat()}

        def drawn(**opts):
            tl = srv.get("/timeline", params={**window, **opts}).json()
            return tl, {e["invocation_id"] for ln in tl["lanes"] for sub in ln["sublanes"] for e in sub}

        def arrived(inv):  # every transition pynenc stored, in tasktrail (the exporter sends from its own threads)
            r = srv.get(f"/invocations/{inv}/history")
            return r.status_code == 200 and len(r.json()) == len(theirs["histories"][inv])
        wait_until(lambda: all(arrived(i) for i in theirs["histories"]), timeout=30, message="every transition")
        assert drawn()[1] >= set(theirs["histories"])
        shown, ids = drawn()
        hidden, kept = drawn(show_system="0")
        assert ids - kept == core and kept == ids - core, (ids - kept, core)
        assert hidden["options"]["system_hidden"] == len(core)
        # The true peak of RUNNING, counted from pynenc's own histories (each status to the next).
        ivs = []
        for inv, hist in theirs["histories"].items():
            for k, (status, t) in enumerate(hist):
                if status in ("RUNNING", "RUNNING_RECOVERY"):  # to the next status, the last to the window's end
                    end = hist[k + 1][1] if k + 1 < len(hist) else window["until"]
                    ivs.append((inv, theirs["tasks"].get(inv, "core"), "running", datetime.fromisoformat(t),
                                datetime.fromisoformat(end)))
        occ = srv.get("/timeline", params={**window, "histogram_status": "running"}).json()["occupancy"]
        assert occ["peak"]["in_flight"] == brute_peak(ivs) <= theirs["threads"]
        assert occ["peak"]["in_flight"] >= 2  # the threads did overlap
        hidden_occ = srv.get("/timeline", params={**window, "histogram_status": "running", "show_system": "0"}).json()
        assert {s["task_id"] for s in hidden_occ["occupancy"]["series"]}.isdisjoint(theirs["core_task_ids"])
        assert set(theirs["core_task_ids"]) <= {s["task_id"] for s in occ["series"]} | {"Other"}
    finally:
        srv.stop()
