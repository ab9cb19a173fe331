/* tasktrail — the log explorer: send the pasted lines, show each with what it resolves to. */
(function () {
  "use strict";
  const TT = window.TT;
  const form = document.getElementById("explorer-form");
  const text = document.getElementById("explorer-text");
  const status = document.getElementById("explorer-status");
  const tbody = document.querySelector("#explorer-lines tbody");
  const tlCard = document.getElementById("explorer-timeline-card");
  const tip = document.createElement("div"); tip.className = "tip"; tip.hidden = true;
  const canvas = document.getElementById("explorer-timeline");
  canvas.parentNode.style.position = "relative"; canvas.parentNode.appendChild(tip);
  const timeline = new TT.Timeline(canvas, { compact: true, tip, onOpen: (id) => { location.href = "/invocations/" + TT.seg(id); } });

  // A reference: linked when it resolves; when it does not, it says why (not in this store, or the prefix
  // of several stored ids, listed in its title). Long ids stay on one line.
  function chip(kind, value, r) {
    const el = document.createElement(r.link ? "a" : "span");
    el.className = "chip " + (r.resolved === false ? "unresolved" : r.resolved ? "resolved" : "plain");
    el.textContent = `${kind}:${value}`;
    if (r.link) el.href = r.link;
    el.dataset.kind = kind;
    el.dataset.resolved = String(r.resolved);
    if (kind === "invocation" && r.id) el.dataset.invocationId = r.id;
    if ((kind === "runner" || kind === "worker") && r.id) el.dataset.runnerId = r.id;
    if (r.resolved !== false) return el;
    const box = document.createElement("span");
    box.className = "ref-unresolved";
    const why = document.createElement("span");
    why.className = "reason";
    why.textContent = r.reason || "not in this store";
    el.title = why.title = r.candidates && r.candidates.length ? "candidates: " + r.candidates.join(", ") : "no stored id matches it";
    box.append(el, " ", why);
    return box;
  }

  function render(res) {
    tbody.replaceChildren();
    for (const l of res.lines) {
      const tr = tbody.insertRow();
      tr.dataset.lineNo = l.line_no;
      const lvl = (l.level || "").toUpperCase();
      if (lvl) tr.className = "lvl-" + (lvl === "WARNING" ? "WARN" : lvl === "CRITICAL" ? "FATAL" : lvl);
      tr.insertCell().textContent = l.line_no;
      tr.insertCell().textContent = l.timestamp || "";
      const lc = tr.insertCell();
      if (lvl) { const b = document.createElement("span"); b.className = "level lvl-" + lvl; b.textContent = l.level; lc.append(b); }
      const rc = tr.insertCell(); l.runners.forEach((r) => rc.append(chip(r.class || "runner", r.value, r), " "));
      const ic = tr.insertCell(); if (l.invocation) ic.append(chip("invocation", l.invocation.value, l.invocation));
      if (l.invocation && l.invocation.status) { const p = document.createElement("span"); p.className = "pill s-" + l.invocation.status; p.textContent = l.invocation.status; ic.append(" ", p); }
      const tc = tr.insertCell(); if (l.task) tc.append(chip("task", l.task.value, l.task));
      const mc = tr.insertCell();
      if (l.source) { const s = document.createElement("span"); s.className = "muted small source"; s.textContent = l.source; s.title = "the prefix of the pasted line (container, pod, unit)"; mc.append(s); }
      const pre = document.createElement("pre"); pre.textContent = l.message + (l.continuation.length ? "\n" + l.continuation.join("\n") : "");
      mc.append(pre);
      l.refs.forEach((r) => mc.append(chip(r.kind, r.value, r), " "));
    }
    const c = res.counts;
    status.textContent = `${c.lines} lines · runners ${c.runners.resolved}/${c.runners.total} resolved · invocations ${c.invocations.resolved}/${c.invocations.total} resolved`;
    if (res.timeline) {
      tlCard.hidden = false;
      const q = new URLSearchParams({ since: res.timeline.since, until: res.timeline.until, limit: "2000" });
      res.timeline.invocations.forEach((id) => q.append("invocations", id)); // one per value: ids may hold commas
      fetch("/api/v1/timeline?" + q).then((r) => r.json()).then((tl) => { if (tl.lanes) { timeline.setData(tl); canvas.dataset.shown = String(tl.shown); } });
    } else {
      tlCard.hidden = true;
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    status.textContent = "resolving…";
    fetch("/api/v1/log-explorer", { method: "POST", headers: { "Content-Type": "text/plain" }, body: text.value })
      .then((r) => r.json().then((b) => ({ ok: r.ok, b })))
      .then(({ ok, b }) => { if (!ok) { status.textContent = b.error.message; return; } render(b); });
  });
})();
