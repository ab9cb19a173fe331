/* tasktrail — the built-in trace waterfall: spans as bars on the trace's own time axis. */
(function () {
  "use strict";
  const TT = window.TT;
  const spans = TT.data.spans.slice();
  const root = document.getElementById("waterfall");
  const ns = (s) => Number(BigInt(s) / 1000n) / 1000;  // ms, as float
  const t0 = Math.min(...spans.map((s) => ns(s.startTimeUnixNano)));
  const t1 = Math.max(...spans.map((s) => ns(s.endTimeUnixNano)));
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const depth = (s) => { let d = 0, p = s; const seen = new Set(); while (p && p.parentSpanId && byId.has(p.parentSpanId) && !seen.has(p.spanId)) { seen.add(p.spanId); p = byId.get(p.parentSpanId); d++; } return d; };
  spans.sort((a, b) => ns(a.startTimeUnixNano) - ns(b.startTimeUnixNano));
  for (const s of spans) {
    const row = document.createElement("div");
    row.className = "span-row";
    row.dataset.spanId = s.spanId;
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = `${"  ".repeat(depth(s))}${s.name} · ${s.service || ""}`;
    const attrs = (s.attributes || []).map((a) => `${a.key}=${Object.values(a.value)[0]}`).join("\n");
    name.title = `${s.spanId}\n${attrs}`;
    if (s.tasktrail && s.tasktrail.warnings && s.tasktrail.warnings.length) {
      // Clock corrections made when read (query/traces.py), said as Jaeger's UI says its own.
      const warn = document.createElement("span");
      warn.className = "clock-warning";
      warn.textContent = " ⚠ clock adjusted";
      warn.title = s.tasktrail.warnings.join("\n");
      name.appendChild(warn);
      row.classList.add("adjusted");
    }
    const track = document.createElement("div");
    track.className = "bar-track";
    const bar = document.createElement("div");
    bar.className = "bar" + (s.status && s.status.code === 2 ? " error" : "");
    const span = Math.max(t1 - t0, 0.001);
    bar.style.left = ((ns(s.startTimeUnixNano) - t0) / span) * 100 + "%";
    bar.style.width = Math.max(((ns(s.endTimeUnixNano) - ns(s.startTimeUnixNano)) / span) * 100, 0.2) + "%";
    track.appendChild(bar);
    const dur = document.createElement("div");
    dur.className = "num";
    dur.textContent = TT.fmtDur((ns(s.endTimeUnixNano) - ns(s.startTimeUnixNano)) / 1000);
    row.append(name, track, dur);
    root.appendChild(row);
  }
})();
