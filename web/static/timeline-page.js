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

  const fitBox = document.getElementById("fit");
  // collapse=1/0 pins the "collapse short-lived runner contexts" toggle; without it the timeline decides
  // (on when the lanes would not fit on the screen). fit=0 shows the whole window instead of the data's span.
  const pinned = params.get("collapse");
  const tl = new TT.Timeline(canvas, {
    tip: document.getElementById("timeline-tip"),
    onOpen: (id) => { location.href = "/invocations/" + TT.seg(id); },
    onZoom: (a, b) => { params.set("since", a); params.set("until", b); go(); },
    collapse: pinned === null ? null : pinned === "1",
    fit: params.get("fit") !== "0",
    onCollapse: (on) => { params.set("collapse", on ? "1" : "0"); history.replaceState(null, "", "/timeline?" + params.toString()); },
  });
  fitBox.checked = tl.fit;
  // fit=0 also reaches the API: its occupancy is bucketed over the range drawn.
  fitBox.addEventListener("change", () => { option("fit", fitBox.checked ? null : "0"); tl.setFit(fitBox.checked); });

  // Pynmon's timeline options (query/timeline_options.py), each in the URL: resolution, show_system=0,
  // show_atomic_service=0, histogram_status (default pending,running; given empty: none). Each reloads.
  const DEFAULT_CATEGORIES = "pending,running";
  const resolution = document.getElementById("resolution");
  const showSystem = document.getElementById("show-system"), showAtomic = document.getElementById("show-atomic");
  const catBoxes = Array.from(document.querySelectorAll("#hist-toggles input[data-category]"));
  const off = (v) => v !== null && ["0", "false", "no"].includes(v.toLowerCase());
  function syncOptions() {
    resolution.value = params.get("resolution") || "auto";
    showSystem.checked = !off(params.get("show_system"));
    showAtomic.checked = !off(params.get("show_atomic_service"));
    const cats = (params.has("histogram_status") ? params.get("histogram_status") : DEFAULT_CATEGORIES).toLowerCase().split(",");
    for (const b of catBoxes) b.checked = cats.includes(b.dataset.category);
  }
  function option(name, value) {
    if (value === null) params.delete(name); else params.set(name, value);
    go();
  }
  syncOptions();
  resolution.addEventListener("change", () => option("resolution", resolution.value === "auto" ? null : resolution.value));
  showSystem.addEventListener("change", () => option("show_system", showSystem.checked ? null : "0"));
  showAtomic.addEventListener("change", () => option("show_atomic_service", showAtomic.checked ? null : "0"));
  for (const b of catBoxes) b.addEventListener("change", () => {
    const cats = catBoxes.filter((x) => x.checked).map((x) => x.dataset.category).join(",");
    option("histogram_status", cats === DEFAULT_CATEGORIES ? null : cats);
  });
  tl.select(params.get("selected"));
  TT.timeline = tl;

  function go() {
    history.pushState(null, "", "/timeline?" + params.toString());
    for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
    syncOptions();
    load();
  }

  function load() {
    const q = new URLSearchParams(params);
    for (const k of ["selected", "collapse"]) q.delete(k);
    count.textContent = "loading…";
    fetch("/api/v1/timeline?" + q.toString(), { headers: { Accept: "application/json" } })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) { count.textContent = body.error ? body.error.message : "error"; count.className = "error-message"; return; }
        current = body;
        tl.setData(body);
        occupancy();
        status();
        canvas.dataset.shown = String(body.shown);
        canvas.dataset.total = String(body.total);
        showSelected();
      })
      .catch((e) => { count.textContent = "could not load the timeline: " + e; });
  }

  function occupancy() {
    // Task colours (charts.js) by task id, every task of the answer: the same whichever statuses are shown.
    if (TT.assignTaskColors) {
      const tasks = new Set();
      for (const lane of current.lanes || []) for (const sl of lane.sublanes) for (const e of sl) tasks.add(e.task_id || "?");
      TT.assignTaskColors(Array.from(tasks).sort());
    }
    TT.drawOccupancy(document.getElementById("occupancy"), current, tl.labelW, { t0: tl.t0, t1: tl.t1 },
                     document.getElementById("occupancy-info"));
    const legend = document.getElementById("occupancy-legend");
    legend.replaceChildren();
    for (const s of (current.occupancy || { series: [] }).series) {
      const span = document.createElement("span"), i = document.createElement("i");
      i.style.background = TT.taskColor ? TT.taskColor(s.task_id) : "#3498db";
      span.dataset.task = s.task_id;
      span.append(i, document.createTextNode(s.task_id));
      legend.appendChild(span);
    }
  }

  /* "N invocations · window a → b", and the span shown when it is the data's, not the whole window. */
  function status() {
    const body = current;
    const w0 = TT.parseTime(body.since), w1 = TT.parseTime(body.until);
    const span = `${TT.fmtTime(w0)} → ${TT.fmtTime(w1)}`;
    const fitted = tl.t0 > w0 || tl.t1 < w1;
    const shown = fitted
      ? ` · showing the data's span ${TT.fmtTime(tl.t0, false)} → ${TT.fmtTime(tl.t1, false)} (${TT.fmtDur((tl.t1 - tl.t0) / 1000)})`
      : "";
    count.className = body.truncated ? "truncated" : "";
    const opts = body.options || {};
    const hidden = opts.show_system === false ? ` · ${opts.system_hidden} system-task invocations hidden` : "";
    count.textContent = (body.truncated
      ? `showing ${body.shown} of ${body.total} invocations (raise limit or narrow the window) · ${span}${shown}`
      : `${body.total} invocations · ${span}${shown}`) + hidden;
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
      if (el.value && !(el.name === "resolution" && el.value === "auto")) params.set(el.name, el.value);
      else params.delete(el.name);
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
  // Hovering the occupancy names the bucket under the pointer: its time, each task's count, the total.
  const occCanvas = document.getElementById("occupancy");
  occCanvas.addEventListener("mousemove", (ev) => {
    const x = ev.clientX - occCanvas.getBoundingClientRect().left, occ = current && current.occupancy;
    const hit = (occCanvas.drawn || []).find((d) => x >= d.x0 && x <= d.x1 + 1);
    if (!hit || !occ) { occCanvas.title = ""; return; }
    const here = occCanvas.drawn.filter((d) => d.bucket === hit.bucket);
    const t = TT.parseTime(occ.buckets[hit.bucket]);
    occCanvas.title = `${TT.fmtTime(t)} + ${TT.fmtStep(occ.bucket_s)}\n`
      + here.slice().reverse().map((d) => `${d.task}: ${d.count}`).join("\n")
      + `\n${here.reduce((n, d) => n + d.count, 0)} invocations in ${occ.categories.join(" or ")}`;
  });
  window.addEventListener("popstate", () => { location.reload(); });
  window.addEventListener("resize", () => { if (current) occupancy(); });

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
