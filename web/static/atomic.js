/* tasktrail — atomic-service execution windows per runner on one time axis. */
(function () {
  "use strict";
  const TT = window.TT;
  const ex = TT.data.executions || [];
  const canvas = document.getElementById("atomic-axis");
  if (!ex.length) { canvas.hidden = true; return; }
  const starts = ex.map((e) => TT.parseTime(e.start_ts)).filter(isFinite);
  const ends = ex.map((e) => (e.end_ts ? TT.parseTime(e.end_ts) : Date.now()));
  const lo = Math.min(...starts), hi = Math.max(...ends, lo + 1000), pad = (hi - lo) * 0.03;
  const byRunner = {};
  for (const e of ex) (byRunner[e.runner_id || "?"] = byRunner[e.runner_id || "?"] || []).push({ start: e.start_ts, end: e.end_ts, status: e.status, run_id: e.run_id, reason: e.reason, runner_id: e.runner_id });
  const tl = new TT.Timeline(canvas, { compact: true });
  tl.setData({ since: new Date(lo - pad).toISOString(), until: new Date(hi + pad).toISOString(), lanes: [], edges: [],
               markers: { markers: [], total: 0, truncated: false }, atomic_windows: Object.values(byRunner).flat() });
})();
