/* tasktrail — charts drawn with the vendored uPlot (uplot-1.6.32.min.js, from npm): lines over time and
   stacked bars. Each chart keeps its uPlot instance on its element (`el.uplot`) and the figures it drew
   on `el.dataset` so a reader (or a test) can check them against the API. */
(function () {
  "use strict";
  const TT = (window.TT = window.TT || {});
  // 12 task colours (pynmon's legend shows 12 tasks, then Other).
  TT.PALETTE = ["#3498db", "#e67e22", "#27ae60", "#9b59b6", "#e74c3c", "#16a085", "#f1c40f", "#34495e",
                "#d35400", "#1abc9c", "#8e44ad", "#2c3e50"];
  TT.OTHER = "#bdc3c7";
  /* A task keeps its colour on every chart of a page: assignTaskColors gives the page's tasks distinct
     colours in order; a task not assigned gets one by a hash of its id. */
  const assigned = new Map();
  TT.assignTaskColors = function (tasks) {
    for (const t of tasks) if (t !== "Other" && !assigned.has(t)) assigned.set(t, TT.PALETTE[assigned.size % TT.PALETTE.length]);
  };
  TT.taskColor = function (task) {
    if (task === "Other") return TT.OTHER;
    if (assigned.has(task)) return assigned.get(task);
    let h = 0;
    for (let i = 0; i < task.length; i++) h = (h * 31 + task.charCodeAt(i)) >>> 0;
    return TT.PALETTE[h % TT.PALETTE.length];
  };
  TT.CATEGORY_COLORS = { REGISTERED: "#95a5a6", PENDING: "#f39c12", RUNNING: "#3498db" };

  function widthOf(el) { return Math.max(320, Math.floor(el.getBoundingClientRect().width || 800)); }

  function keepSized(el, u, height) {
    let t = null;
    window.addEventListener("resize", () => {
      clearTimeout(t);
      t = setTimeout(() => u.setSize({ width: widthOf(el), height }), 100);
    });
  }

  function fmtNum(v, unit) {
    if (v == null) return "—";
    if (unit === "s") return TT.fmtDur ? TT.fmtDur(v) : v.toFixed(3) + " s";
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }

  /* Lines (or bars) over time. x: ISO times; series: [{label, values, color, bars, unit}]. opts.step (s): the
     points' spacing; the x-range is then the points' own, half a step each side (one or two points of a
     few seconds are not spread over years). */
  TT.timeChart = function (el, x, series, opts) {
    opts = opts || {};
    const height = opts.height || 220;
    const xs = x.map((t) => Date.parse(t) / 1000);
    const bars = uPlot.paths.bars({ size: [0.7, 40] });
    const xScale = { time: true };
    if (opts.step && xs.length) {  // at least 6 steps wide, so one point still has a readable axis around it
      const pad = Math.max(opts.step / 2, (6 * opts.step - (xs[xs.length - 1] - xs[0])) / 2);
      xScale.range = () => [xs[0] - pad, xs[xs.length - 1] + pad];
    }
    const u = new uPlot({
      width: widthOf(el), height,
      scales: { x: xScale, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{}, { label: opts.yLabel || "", size: 60, values: (u, vals) => vals.map((v) => fmtNum(v, opts.unit)) }],
      series: [{ value: (u, v) => (v == null ? "—" : TT.fmtTime(v * 1000)) }].concat(series.map((s) => ({
        label: s.label, stroke: s.color, fill: s.bars ? s.color + "99" : undefined, width: s.bars ? 1 : 2,
        spanGaps: !s.bars, paths: s.bars ? bars : undefined, points: { show: !s.bars, size: 4 },
        value: (u, v) => fmtNum(v, opts.unit),
      }))),
    }, [xs].concat(series.map((s) => s.values)), el);
    el.uplot = u;
    el.dataset.series = series.map((s) => s.label).join(",");
    el.dataset.points = String(xs.length);
    keepSized(el, u, height);
    return u;
  };

  /* Stacked bars. x: numbers (unix seconds when opts.time) ; series: [{label, values, color}], bottom first.
     Drawn as running sums, the tallest first, so each band shows its own series; the legend and the
     tooltip show each series' own value, not the sum. */
  TT.stackedBars = function (el, x, series, opts) {
    opts = opts || {};
    const height = opts.height || 200;
    let acc = new Array(x.length).fill(0);
    const sums = series.map((s) => (acc = acc.map((a, i) => a + (s.values[i] || 0))));
    const order = series.map((_, i) => i).reverse();
    const bars = uPlot.paths.bars({ size: [opts.barWidth || 0.9, opts.step ? Infinity : 80], align: opts.time ? 1 : 0 });
    const axisX = opts.labels
      ? { splits: () => x, values: (u, vals) => vals.map((v) => opts.labels[v] ?? ""), size: 50 }
      : {};
    const u = new uPlot({
      width: widthOf(el), height,
      scales: {
        x: opts.labels ? { time: false, range: () => [-0.6, x.length - 0.4] }
          : opts.step ? { time: !!opts.time, range: () => [x[0], x[x.length - 1] + opts.step] }  // room for the last bucket
          : { time: !!opts.time },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      axes: [axisX, { label: opts.yLabel || "", size: 60, values: (u, vals) => vals.map((v) => fmtNum(v, opts.unit)) }],
      series: [{ value: (u, v) => (v == null ? "—" : opts.labels ? (opts.labels[v] ?? "") : opts.time ? TT.fmtTime(v * 1000) : v) }]
        .concat(order.map((i) => ({
          label: series[i].label, stroke: series[i].color, fill: series[i].color, width: 0, paths: bars,
          points: { show: false }, value: (u, v, si, idx) => (idx == null ? "—" : fmtNum(series[i].values[idx], opts.unit)),
        }))),
    }, [x].concat(order.map((i) => sums[i])), el);
    el.uplot = u;
    el.dataset.series = series.map((s) => s.label).join(",");
    el.dataset.total = String(sums.length ? sums[sums.length - 1].reduce((a, b) => a + b, 0) : 0);
    keepSized(el, u, height);
    return u;
  };

  /* pynmon's occupancy histogram of one run (the API's `histogram`). */
  TT.histogramChart = function (el, h) {
    const x = h.buckets.map((t) => Date.parse(t) / 1000);
    const series = h.series.map((s) => ({ label: s.task_id, values: s.counts, color: TT.taskColor(s.task_id) }));
    el.dataset.bucketS = String(h.bucket_s);
    return TT.stackedBars(el, x, series, { time: true, step: h.bucket_s, yLabel: h.categories.join(" + "), height: 180 });
  };
})();
