/* tasktrail — workflow pages: occupancy histograms, a run's own timeline, the comparison chart. */
(function () {
  "use strict";
  const TT = window.TT;
  const d = TT.data;

  // Occupancy histograms: one per element carrying data-histogram="<workflow id>" (or the run's own);
  // the page's tasks get distinct colours, busiest first, the same on every histogram.
  const all = (d.histogram ? [d.histogram] : []).concat((d.histograms || []).map((x) => x.histogram));
  if (all.length && TT.assignTaskColors) {  // pages without charts (the runs list) do not load charts.js
    const load = new Map();
    for (const h of all) for (const s of h.series) load.set(s.task_id, (load.get(s.task_id) || 0) + s.counts.reduce((a, b) => a + b, 0));
    TT.assignTaskColors(Array.from(load.keys()).sort((a, b) => load.get(b) - load.get(a) || (a < b ? -1 : 1)));
  }
  document.querySelectorAll("[data-histogram]").forEach((el) => {
    const wid = el.dataset.histogram;
    const h = d.histogram && d.workflow_id === wid ? d.histogram
      : ((d.histograms || []).find((x) => x.workflow_id === wid) || {}).histogram;
    if (h) TT.histogramChart(el, h);
  });

  // A run's members on their own timeline.
  const canvas = document.getElementById("run-timeline");
  if (canvas && TT.Timeline && d.window) {
    const tl = new TT.Timeline(canvas, {
      tip: document.getElementById("timeline-tip"),
      onOpen: (id) => { location.href = "/invocations/" + TT.seg(id); },
      onZoom: (a, b) => { location.href = `/timeline?workflow=${encodeURIComponent(d.workflow_id)}&since=${a}&until=${b}`; },
    });
    TT.runTimeline = tl;
    const pad = Math.max(0.05 * (Date.parse(d.window.until) - Date.parse(d.window.since)), 50);
    const q = new URLSearchParams({ workflow: d.workflow_id, limit: "2000",
      since: new Date(Date.parse(d.window.since) - pad).toISOString(),
      until: new Date(Date.parse(d.window.until) + pad).toISOString() });
    if (d.app_id) q.set("app", d.app_id);
    fetch("/api/v1/timeline?" + q.toString(), { headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then((body) => { tl.setData(body); canvas.dataset.shown = String(body.shown); })
      .catch((e) => { canvas.dataset.error = String(e); });
  }

  // The comparison: time each run's members spent registered / pending / running, stacked per run.
  const cmp = document.getElementById("compare-chart");
  if (cmp && d.runs) {
    const cats = ["REGISTERED", "PENDING", "RUNNING"];
    TT.stackedBars(cmp, d.runs.map((_, i) => i), cats.map((c) => ({
      label: c.toLowerCase(), color: TT.CATEGORY_COLORS[c], values: d.runs.map((r) => r.time_in[c]),
    })), { labels: d.runs.map((r) => r.workflow_id.slice(0, 10)), yLabel: "member time", unit: "s", barWidth: 0.6,
           height: 240 });
  }

  // Run pickers: "compare" and "histograms" need 1–10 ticked runs.
  const form = document.getElementById("runs-form");
  if (form) {
    const boxes = () => Array.from(form.querySelectorAll("input[name=runs]:checked"));
    const note = document.getElementById("pick-note");
    const update = () => {
      const n = boxes().length;
      form.querySelectorAll("button[data-needs-runs]").forEach((b) => { b.disabled = n < 1 || n > 10; });
      if (note) note.textContent = n > 10 ? `${n} ticked: at most 10` : `${n} ticked`;
    };
    form.addEventListener("change", update);
    update();
    const hist = document.getElementById("show-histograms");
    if (hist) hist.addEventListener("click", () => {
      const u = new URL(location.href);
      u.searchParams.delete("histogram_workflow");
      boxes().forEach((b) => u.searchParams.append("histogram_workflow", b.value));
      location.href = u.toString();
    });
  }
})();
