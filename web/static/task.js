/* tasktrail — /tasks/{task}: duration quantiles and throughput over time (charts.js). */
(function () {
  "use strict";
  const TT = window.TT;
  const s = TT.data.series;
  if (!s) return;
  const dur = document.getElementById("duration-chart");
  if (dur) {
    TT.timeChart(dur, s.t, [
      { label: "p50", values: s.p50, color: "#27ae60" },
      { label: "p95", values: s.p95, color: "#f39c12" },
      { label: "p99", values: s.p99, color: "#e74c3c" },
    ], { yLabel: "duration", unit: "s", step: s.step_s });
  }
  const thr = document.getElementById("throughput-chart");
  if (thr) {
    TT.timeChart(thr, s.t, [
      { label: `finished per ${TT.fmtStep(s.step_s)}`, values: s.finished, color: "#3498db", bars: true },
      { label: "failed", values: s.failed, color: "#e74c3c", bars: true },
    ], { yLabel: "invocations", height: 180, step: s.step_s });
  }
})();
