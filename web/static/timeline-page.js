/* tasktrail — the /timeline page: URL-held filters, presets, drag zoom, pan, follow, selection. */
(function () {
  "use strict";
  const TT = window.TT;
  const form = document.getElementById("timeline-form");
  const canvas = document.getElementById("timeline");
  const count = document.getElementById("timeline-count");
  const info = document.getElementById("selected-info");
  const params = new URLSearchParams(location.search);
  const PRESETS = { "5m": 3e5, "15m": 9e5, "1h": 36e5, "6h": 216e5, "24h": 864e5, "7d": 6048e5 };
  let current = null;
  let followTimer = null;

  const tl = new TT.Timeline(canvas, {
    tip: document.getElementById("timeline-tip"),
    onOpen: (id) => { location.href = "/invocations/" + TT.seg(id); },
    onZoom: (a, b) => { params.set("since", a); params.set("until", b); go(); },
  });
  tl.select(params.get("selected"));
  TT.timeline = tl;

  function go() {
    history.pushState(null, "", "/timeline?" + params.toString());
    for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
    load();
  }

  function load() {
    const q = new URLSearchParams(params);
    q.delete("selected");
    count.textContent = "loading…";
    fetch("/api/v1/timeline?" + q.toString(), { headers: { Accept: "application/json" } })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) { count.textContent = body.error ? body.error.message : "error"; count.className = "error-message"; return; }
        current = body;
        tl.setData(body);
        TT.drawOccupancy(document.getElementById("occupancy"), body, tl.labelW);
        const span = `${TT.fmtTime(TT.parseTime(body.since))} → ${TT.fmtTime(TT.parseTime(body.until))}`;
        count.className = body.truncated ? "truncated" : "";
        count.textContent = body.truncated
          ? `showing ${body.shown} of ${body.total} invocations (raise limit or narrow the window) · ${span}`
          : `${body.total} invocations · ${span}`;
        canvas.dataset.shown = String(body.shown);
        canvas.dataset.total = String(body.total);
        showSelected();
      })
      .catch((e) => { count.textContent = "could not load the timeline: " + e; });
  }

  function showSelected() {
    const sel = params.get("selected");
    if (!sel) { info.textContent = ""; return; }
    const found = tl.invRows[sel];
    info.textContent = found ? `selected ${sel} (${found[0].e.task_id || "?"})` : `selected ${sel} is not in this window`;
    info.dataset.found = found ? "yes" : "no";
    if (found) {
      const y = found[0].y + canvas.getBoundingClientRect().top + window.scrollY - 120;
      window.scrollTo(0, Math.max(0, y));
    }
  }

  function span() {
    if (!current) return 36e5;
    return TT.parseTime(current.until) - TT.parseTime(current.since);
  }
  function shift(frac) {
    const a = TT.parseTime(current.since) + span() * frac, b = TT.parseTime(current.until) + span() * frac;
    params.set("since", new Date(a).toISOString()); params.set("until", new Date(b).toISOString()); go();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.value) params.set(el.name, el.value); else params.delete(el.name);
    }
    go();
  });
  form.querySelectorAll("[data-preset]").forEach((b) => b.addEventListener("click", () => {
    const now = Date.now();
    params.set("since", new Date(now - PRESETS[b.dataset.preset]).toISOString());
    params.delete("until");
    go();
  }));
  document.getElementById("pan-left").addEventListener("click", () => current && shift(-0.5));
  document.getElementById("pan-right").addEventListener("click", () => current && shift(0.5));
  document.getElementById("zoom-out").addEventListener("click", () => {
    if (!current) return;
    const s = span();
    const a = TT.parseTime(current.since) - s / 2, b = TT.parseTime(current.until) + s / 2;
    params.set("since", new Date(a).toISOString()); params.set("until", new Date(b).toISOString()); go();
  });
  document.getElementById("follow").addEventListener("change", (ev) => {
    clearInterval(followTimer);
    if (ev.target.checked) {
      followTimer = setInterval(() => {
        const s = span();
        params.set("since", new Date(Date.now() - s).toISOString());
        params.delete("until");
        load();
      }, 5000);
    }
  });
  window.addEventListener("popstate", () => { location.reload(); });

  const legend = document.getElementById("legend");
  for (const [s, c] of Object.entries(TT.STATUS_COLORS)) {
    const span = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = c;
    span.append(i, document.createTextNode(s));
    legend.appendChild(span);
  }
  load();
})();
