/* tasktrail — /logs: search, live tail (Server-Sent Events) with follow and pause, download as .log. */
(function () {
  "use strict";
  const TT = window.TT;
  const form = document.getElementById("logs-form");
  const body = document.getElementById("log-rows");
  const state = document.getElementById("tail-state");
  const followBtn = document.getElementById("follow");
  const pauseBtn = document.getElementById("pause");
  let source = null, paused = false, held = [];

  /* One line in tasktrail's own text format: what Download writes and the log explorer reads back. */
  TT.logLine = function (l) {
    const parts = [l.timestamp, (l.level || "INFO").padEnd(5)];
    for (const [key, kind] of [["runner_id", "runner"], ["worker_id", "worker"], ["invocation_id", "invocation"], ["task_id", "task"]]) {
      if (l[key]) parts.push(`${kind}:${l[key]}`);
    }
    const v = l.values && l.values.message;
    const cut = v && v.truncated ? ` … [cut: the first ${v.preview_bytes} of ${v.bytes} bytes]` : "";
    return parts.join(" ") + " | " + (String(l.message || "") + cut).replace(/\n/g, "\n    ");
  };

  function cell(tr, text, cls) { const td = tr.insertCell(); if (cls) td.className = cls; td.textContent = text || ""; return td; }
  function link(tr, href, text, attr, val) {
    const td = tr.insertCell();
    if (!val) return td;
    const a = document.createElement("a");
    a.className = "id"; a.href = href; a.textContent = text; a.setAttribute(attr, val); a.title = val;
    td.appendChild(a);
    return td;
  }
  function row(l, prepend) {
    const tr = document.createElement("tr");
    tr.className = "lvl-" + (l.level || "");
    tr.dataset.invocationId = l.invocation_id || "";
    tr.dataset.runnerId = l.worker_id || l.runner_id || "";
    tr.dataset.line = TT.logLine(l);
    cell(tr, TT.fmtTime(TT.parseTime(l.timestamp)));
    cell(tr, l.level);
    const rid = l.worker_id || l.runner_id;
    link(tr, "/runners/" + TT.seg(rid || ""), l.runner_label || rid || "", "data-runner-id", rid);
    link(tr, "/invocations/" + TT.seg(l.invocation_id || ""), (l.invocation_id || "").slice(0, 8), "data-invocation-id", l.invocation_id);
    cell(tr, l.task_id, "task");
    TT.messageCell(tr.insertCell(), l);
    if (prepend) body.insertBefore(tr, body.firstChild); else body.appendChild(tr);
    const empty = document.getElementById("logs-empty");
    if (empty) empty.remove();
  }
  // Lines rendered by the server carry their text form too, so Download needs no second fetch.
  (TT.data.items || []).forEach((l, i) => { if (body.rows[i]) body.rows[i].dataset.line = TT.logLine(l); });

  function params() {
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value && el.name !== "until") q.set(el.name, el.value);
    return q;
  }

  function follow(on) {
    if (source) { source.close(); source = null; }
    followBtn.classList.toggle("on", on);
    pauseBtn.disabled = !on;
    state.textContent = on ? "following…" : "";
    if (!on) return;
    source = new EventSource("/api/v1/logs/tail?" + params().toString());
    source.addEventListener("open", () => { state.textContent = "following live"; state.dataset.state = "open"; });
    source.addEventListener("log", (ev) => {
      const l = JSON.parse(ev.data);
      if (paused) { held.push(l); state.textContent = `paused · ${held.length} new`; return; }
      row(l, true);
    });
    source.addEventListener("error", () => { state.textContent = "reconnecting…"; });
  }
  followBtn.addEventListener("click", () => follow(!source));
  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    pauseBtn.classList.toggle("on", paused);
    if (!paused) { held.forEach((l) => row(l, true)); held = []; state.textContent = "following live"; }
  });
  document.getElementById("download").addEventListener("click", () => {
    const lines = Array.from(body.rows).map((tr) => tr.dataset.line).filter(Boolean).reverse();
    const blob = new Blob([lines.join("\n") + (lines.length ? "\n" : "")], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "tasktrail-logs.log";
    document.body.appendChild(a); a.click(); a.remove();
  });
  // Filters apply to the tail at once.
  ["logs-level", "logs-q"].forEach((id) => document.getElementById(id).addEventListener("change", () => { if (source) follow(true); }));
  TT.tailState = () => (source ? source.readyState : -1);
})();
