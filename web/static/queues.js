/* tasktrail — /queues: a small depth-over-time chart per queue (charts.js), from the page's JSON. */
(function () {
  "use strict";
  const TT = window.TT;
  const queues = (TT.data && TT.data.queues) || [];
  for (const el of document.querySelectorAll(".queue-chart")) {
    const q = queues[Number(el.dataset.index)];
    if (!q || !q.series.t.length) { el.textContent = "—"; continue; }
    TT.timeChart(el, q.series.t, [
      { label: "pending", values: q.series.depth, color: q.unconsumed ? "#e74c3c" : "#3498db" },
      { label: "peak", values: q.series.peak, color: "#95a5a6" },
    ], { yLabel: "messages", height: 120, step: TT.data.step_s });
    el.dataset.last = String(q.series.depth[q.series.depth.length - 1]);
  }
})();
