/* tasktrail — canvas timeline: lanes per runner context, packed sub-lanes, bars and points in the
 * pynmon palette, hatched ongoing bars, parent→child connectors, event markers, atomic-service windows,
 * drag to zoom, hover and click. Draws 10,000 invocations without a DOM node per element. */
(function () {
  "use strict";
  const TT = (window.TT = window.TT || {});
  const OUTCOMES = new Set(["SUCCESS", "FAILED", "RETRY", "KILLED"]);
  const NICE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5,
                9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];
  const MARKER_COLORS = { triggered: "#28a745", matched: "#0d6efd", unmatched: "#6c757d" };

  function hatch(ctx) {
    const c = document.createElement("canvas");
    c.width = c.height = 8;
    const g = c.getContext("2d");
    g.strokeStyle = "rgba(255,255,255,0.55)";
    g.lineWidth = 2;
    g.beginPath(); g.moveTo(0, 8); g.lineTo(8, 0); g.stroke();
    return ctx.createPattern(c, "repeat");
  }

  function short(id, n) { return id ? (id.length > n ? id.slice(0, n) : id) : "?"; }
  function abbrev(cls) { return cls ? (cls.match(/[A-Z]/g) || [cls[0]]).join("") : "?"; }

  class Timeline {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.opts = Object.assign({ compact: false, tip: null, onOpen: null, onSelect: null, onZoom: null }, opts || {});
      this.rowH = this.opts.compact ? 14 : 18;
      this.labelW = this.opts.compact ? 150 : 240;
      this.selected = null;
      this.hits = [];
      this.data = null;
      this._bind();
    }

    setData(tl) {
      this.data = tl;
      this.t0 = TT.parseTime(tl.since);
      this.t1 = TT.parseTime(tl.until);
      this.layout();
      this.draw();
    }

    select(id) { this.selected = id || null; this.draw(); }

    x(t) { return this.labelW + ((t - this.t0) / (this.t1 - this.t0)) * (this.width - this.labelW - 10); }
    t(x) { return this.t0 + ((x - this.labelW) / (this.width - this.labelW - 10)) * (this.t1 - this.t0); }

    layout() {
      const tl = this.data;
      const rows = [];
      let y = 26;
      this.markerY = null;
      if (tl.markers && tl.markers.markers && tl.markers.markers.length) {
        this.markerY = y + 8;
        rows.push({ kind: "label", y, h: 16, text: "events", sub: `${tl.markers.total}${tl.markers.truncated ? " (truncated)" : ""}` });
        y += 18;
      }
      const windowsBy = {};
      for (const w of tl.atomic_windows || []) (windowsBy[w.runner_id] = windowsBy[w.runner_id] || []).push(w);
      const lanes = tl.lanes || [];
      const ids = new Set(lanes.map((l) => l.runner_id));
      let group = null;
      this.lanePos = {};
      this.invRows = {};
      const header = (rid, cls, host) => {
        rows.push({ kind: "header", y, h: 16, text: `${abbrev(cls)}(${short(rid, 10)})`, sub: host || "", runner: rid });
        y += 16;
      };
      for (const lane of lanes) {
        const g = lane.parent_runner_id || lane.runner_id;
        if (lane.parent_runner_id && g !== group) {
          const parent = lanes.find((l) => l.runner_id === lane.parent_runner_id);
          if (!parent || !ids.has(lane.parent_runner_id)) header(lane.parent_runner_id, parent ? parent.runner_class : "Runner", lane.hostname);
        }
        group = g;
        const h = Math.max(1, lane.sublanes.length) * this.rowH + 6;
        const label = `${lane.parent_runner_id ? "  └ " : ""}${abbrev(lane.runner_class)}(${short(lane.runner_id, 10)})`;
        rows.push({ kind: "lane", y, h, text: label, sub: lane.hostname ? `${lane.hostname}${lane.pid ? " pid " + lane.pid : ""}` : "", runner: lane.runner_id, lane });
        lane.sublanes.forEach((sl, k) => {
          for (const e of sl) {
            (this.invRows[e.invocation_id] = this.invRows[e.invocation_id] || []).push({ y: y + 3 + k * this.rowH, e });
          }
        });
        this.lanePos[lane.runner_id] = y;
        y += h;
        const ws = windowsBy[lane.runner_id];
        if (ws) {
          rows.push({ kind: "atomic", y, h: this.rowH, text: "  atomic service", windows: ws, runner: lane.runner_id });
          y += this.rowH;
          delete windowsBy[lane.runner_id];
        }
        y += 2;
      }
      for (const [rid, ws] of Object.entries(windowsBy)) {  // runners with only atomic-service activity
        rows.push({ kind: "atomic", y, h: this.rowH, text: `AS ${short(rid, 7)}`, windows: ws, runner: rid });
        y += this.rowH + 2;
      }
      this.rows = rows;
      this.height = Math.min(Math.max(y + 10, 120), 30000);
    }

    draw() {
      if (!this.data) return;
      const dpr = window.devicePixelRatio || 1;
      this.width = this.canvas.clientWidth || 900;
      this.canvas.width = this.width * dpr;
      this.canvas.height = this.height * dpr;
      this.canvas.style.height = this.height + "px";
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, this.width, this.height);
      ctx.font = "11px system-ui, sans-serif";
      this.hits = [];
      this._axis(ctx);
      const pattern = hatch(ctx);
      const sel = this.selected;
      const dim = sel && this.invRows[sel];
      for (const row of this.rows) {
        ctx.fillStyle = row.kind === "header" ? "#111827" : "#374151";
        ctx.font = row.kind === "header" ? "bold 11px system-ui, sans-serif" : "11px system-ui, sans-serif";
        ctx.fillText(row.text, 6, row.y + 12);
        if (row.sub && !this.opts.compact) {
          ctx.fillStyle = "#9ca3af";
          ctx.fillText(row.sub, 6 + Math.min(ctx.measureText(row.text).width + 8, 130), row.y + 12);
        }
        ctx.strokeStyle = "#eef0f3";
        ctx.beginPath(); ctx.moveTo(0, row.y + row.h + 0.5); ctx.lineTo(this.width, row.y + row.h + 0.5); ctx.stroke();
        if (row.kind === "atomic") this._atomic(ctx, row);
      }
      this._edges(ctx);
      for (const row of this.rows) {
        if (row.kind !== "lane") continue;
        row.lane.sublanes.forEach((sl, k) => {
          const y = row.y + 3 + k * this.rowH;
          for (const e of sl) this._entry(ctx, e, y, pattern, dim && e.invocation_id !== sel);
        });
      }
      if (sel && this.invRows[sel]) {
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 2;
        for (const { y, e } of this.invRows[sel]) {
          const xs = [];
          for (const s of e.segments) xs.push(this.x(TT.parseTime(s.start)), this.x(TT.parseTime(s.end)));
          for (const p of e.points) xs.push(this.x(TT.parseTime(p.timestamp)));
          const x0 = Math.min(...xs) - 5, x1 = Math.max(...xs) + 5;
          ctx.strokeRect(x0, y - 2, Math.max(8, x1 - x0), this.rowH);
        }
        ctx.lineWidth = 1;
      }
      if (this.markerY !== null) this._markers(ctx);
      if (this.drag) {
        ctx.fillStyle = "rgba(37,99,235,0.15)";
        const a = Math.min(this.drag.x0, this.drag.x1), b = Math.max(this.drag.x0, this.drag.x1);
        ctx.fillRect(a, 20, b - a, this.height - 20);
      }
    }

    _axis(ctx) {
      const span = this.t1 - this.t0;
      const plotW = this.width - this.labelW - 10;
      let step = NICE[NICE.length - 1];
      for (const s of NICE) if ((s / span) * plotW >= 110) { step = s; break; }
      ctx.fillStyle = "#6b7280";
      ctx.strokeStyle = "#f1f3f5";
      const first = Math.ceil(this.t0 / step) * step;
      for (let t = first; t <= this.t1; t += step) {
        const x = this.x(t);
        ctx.beginPath(); ctx.moveTo(x + 0.5, 20); ctx.lineTo(x + 0.5, this.height); ctx.stroke();
        const d = new Date(t);
        const label = step < 1000 ? TT.fmtTime(t, false).slice(3) : step >= 864e5 ? d.toISOString().slice(5, 10)
          : TT.fmtTime(t, false).slice(0, step < 6e4 ? 8 : 5);
        ctx.fillText(label, x + 3, 14);
      }
    }

    _entry(ctx, e, y, pattern, dimmed) {
      const h = this.rowH - 6;
      ctx.globalAlpha = dimmed ? 0.35 : 1;
      for (const s of e.segments) {
        const a = TT.parseTime(s.start), b = TT.parseTime(s.end);
        const x0 = this.x(a), x1 = Math.max(this.x(b), x0 + 2);
        ctx.fillStyle = TT.color(OUTCOMES.has(s.next_status) ? s.next_status : s.status);
        ctx.fillRect(x0, y, x1 - x0, h);
        if (s.ongoing) { ctx.fillStyle = pattern; ctx.fillRect(x0, y, x1 - x0, h); }
        this.hits.push({ x0, x1, y0: y, y1: y + h, inv: e.invocation_id, task: e.task_id, status: s.status, a, b, ongoing: s.ongoing });
      }
      for (const p of e.points) {
        const t = TT.parseTime(p.timestamp), x = this.x(t);
        ctx.fillStyle = TT.color(p.status);
        ctx.beginPath(); ctx.arc(x, y + h / 2, 4, 0, Math.PI * 2); ctx.fill();
        ctx.strokeStyle = "#fff"; ctx.stroke();
        this.hits.push({ x0: x - 5, x1: x + 5, y0: y, y1: y + h, inv: e.invocation_id, task: e.task_id, status: p.status, a: t, b: t });
      }
      ctx.globalAlpha = 1;
    }

    _edges(ctx) {
      ctx.strokeStyle = "rgba(120,144,156,0.55)";
      ctx.setLineDash([2, 3]);
      for (const edge of this.data.edges || []) {
        const c = this.invRows[edge.child], p = this.invRows[edge.parent];
        if (!c || !p) continue;
        const first = (r) => {
          const ts = r.e.points.map((q) => TT.parseTime(q.timestamp)).concat(r.e.segments.map((s) => TT.parseTime(s.start)));
          return Math.min(...ts);
        };
        const cr = c.reduce((m, r) => (first(r) < first(m) ? r : m));
        const tc = first(cr);
        const pr = p.find((r) => r.e.segments.some((s) => TT.parseTime(s.start) <= tc && TT.parseTime(s.end) >= tc)) || p[0];
        const h = (this.rowH - 6) / 2;
        ctx.beginPath();
        ctx.moveTo(this.x(tc), pr.y + h);
        ctx.lineTo(this.x(tc), cr.y + h);
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }

    _markers(ctx) {
      for (const m of this.data.markers.markers) {
        const t = TT.parseTime(m.timestamp), x = this.x(t), y = this.markerY;
        ctx.fillStyle = MARKER_COLORS[m.triggered ? "triggered" : m.matched ? "matched" : "unmatched"];
        ctx.beginPath(); ctx.moveTo(x, y - 5); ctx.lineTo(x + 5, y); ctx.lineTo(x, y + 5); ctx.lineTo(x - 5, y); ctx.fill();
        this.hits.push({ x0: x - 5, x1: x + 5, y0: y - 5, y1: y + 5, event: m, a: t, b: t });
      }
    }

    _atomic(ctx, row) {
      for (const w of row.windows) {
        const a = TT.parseTime(w.start), b = w.end ? TT.parseTime(w.end) : this.t1;
        const x0 = this.x(Math.max(a, this.t0)), x1 = Math.max(this.x(Math.min(b, this.t1)), x0 + 6);
        ctx.fillStyle = w.status === "BLOCKED" ? "#fdba74" : w.status === "ABANDONED" ? "#fca5a5" : "#f97316";
        ctx.strokeStyle = "#c2410c";
        ctx.fillRect(x0, row.y + 3, x1 - x0, this.rowH - 6);
        ctx.strokeRect(x0 + 0.5, row.y + 3.5, x1 - x0 - 1, this.rowH - 7);
        this.hits.push({ x0, x1, y0: row.y + 3, y1: row.y + this.rowH - 3, atomic: w, a, b });
      }
    }

    hitAt(x, y) {
      let best = null;
      for (const h of this.hits) {
        if (x >= h.x0 && x <= h.x1 && y >= h.y0 - 1 && y <= h.y1 + 1) {
          if (!best || (h.x1 - h.x0) < (best.x1 - best.x0)) best = h;
        }
      }
      return best;
    }

    _tip(h, ev) {
      const tip = this.opts.tip;
      if (!tip) return;
      if (!h) { tip.hidden = true; return; }
      let text;
      if (h.event) text = `event ${h.event.event_code || ""}\n${h.event.event_id}\n${TT.fmtTime(h.a)}\n${h.event.triggered ? "triggered" : h.event.matched ? "matched" : "unmatched"}`;
      else if (h.atomic) text = `atomic service run ${short(h.atomic.run_id, 8)}\n${h.atomic.status}\n${TT.fmtTime(h.a)} → ${h.atomic.end ? TT.fmtTime(h.b, false) : "running"}${h.atomic.reason ? "\n" + h.atomic.reason : ""}`;
      else text = `${h.task || "?"}\n${h.inv}\n${h.status}${h.a !== h.b ? ` ${TT.fmtDur((h.b - h.a) / 1000)}` : ""}${h.ongoing ? " (ongoing)" : ""}\n${TT.fmtTime(h.a)}`;
      tip.textContent = text;
      tip.hidden = false;
      const r = this.canvas.getBoundingClientRect();
      const px = ev.clientX - r.left + 14, py = ev.clientY - r.top + 14;
      tip.style.left = Math.min(px, r.width - 300) + "px";
      tip.style.top = py + "px";
    }

    _bind() {
      const c = this.canvas;
      const pos = (ev) => { const r = c.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
      c.addEventListener("mousedown", (ev) => {
        const [x] = pos(ev);
        if (x > this.labelW && this.opts.onZoom) this.drag = { x0: x, x1: x };
      });
      c.addEventListener("mousemove", (ev) => {
        const [x, y] = pos(ev);
        if (this.drag) { this.drag.x1 = x; this.draw(); return; }
        const h = this.hitAt(x, y);
        c.style.cursor = h ? "pointer" : "crosshair";
        this._tip(h, ev);
      });
      c.addEventListener("mouseleave", () => { if (this.opts.tip) this.opts.tip.hidden = true; });
      window.addEventListener("mouseup", (ev) => {
        if (!this.drag) return;
        const d = this.drag;
        this.drag = null;
        if (Math.abs(d.x1 - d.x0) > 6) {
          const a = this.t(Math.min(d.x0, d.x1)), b = this.t(Math.max(d.x0, d.x1));
          this.opts.onZoom(new Date(a).toISOString(), new Date(b).toISOString());
        } else {
          this.draw();
        }
      });
      c.addEventListener("click", (ev) => {
        const [x, y] = pos(ev);
        const h = this.hitAt(x, y);
        if (!h) return;
        if (h.inv) {
          if (this.opts.onSelect) this.opts.onSelect(h.inv);
          if (this.opts.onOpen) this.opts.onOpen(h.inv);
        } else if (h.event && this.opts.onOpen) {
          location.href = "/events/" + TT.seg(h.event.event_id);
        }
      });
      window.addEventListener("resize", () => this.draw());
    }
  }

  /* Pynmon's bucket rule: size from the window, at most 240 buckets. */
  function bucketMs(span) {
    const table = [[5e3, 250], [3e4, 500], [6e4, 1e3], [9e5, 5e3], [36e5, 15e3], [108e5, 6e4], [432e5, 3e5], [2592e5, 18e5]];
    let size = 36e5;
    for (const [max, s] of table) if (span <= max) { size = s; break; }
    return Math.max(size, span / 240);
  }

  TT.drawOccupancy = function (canvas, tl, labelW) {
    const t0 = TT.parseTime(tl.since), t1 = TT.parseTime(tl.until), span = t1 - t0;
    const size = bucketMs(span), n = Math.ceil(span / size);
    const cats = { PENDING: new Array(n).fill(0), RUNNING: new Array(n).fill(0), PAUSED: new Array(n).fill(0) };
    for (const lane of tl.lanes || []) for (const sl of lane.sublanes) for (const e of sl) for (const s of e.segments) {
      const a = TT.parseTime(s.start), b = TT.parseTime(s.end);
      const i0 = Math.max(0, Math.floor((a - t0) / size)), i1 = Math.min(n - 1, Math.floor((b - t0) / size));
      for (let i = i0; i <= i1; i++) cats[s.status][i] += 1;
    }
    const dpr = window.devicePixelRatio || 1, W = canvas.clientWidth || 900, H = canvas.height / (canvas._dpr || 1);
    canvas._dpr = dpr;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const L = labelW || 240, plotW = W - L - 10;
    let max = 1;
    for (let i = 0; i < n; i++) max = Math.max(max, cats.PENDING[i] + cats.RUNNING[i] + cats.PAUSED[i]);
    const bw = plotW / n;
    for (let i = 0; i < n; i++) {
      let y = H - 14;
      for (const c of ["RUNNING", "PENDING", "PAUSED"]) {
        const h = (cats[c][i] / max) * (H - 24);
        if (!h) continue;
        ctx.fillStyle = TT.color(c);
        ctx.fillRect(L + i * bw, y - h, Math.max(1, bw - 1), h);
        y -= h;
      }
    }
    ctx.fillStyle = "#6b7280";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`max ${max} in flight`, 6, 14);
    ctx.fillText(`bucket ${TT.fmtDur(size / 1000)}`, 6, 30);
    ctx.fillText("running · pending · paused", 6, H - 4);
    canvas.dataset.buckets = String(n);
    canvas.dataset.max = String(max);
  };

  TT.Timeline = Timeline;
})();
