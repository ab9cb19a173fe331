/* tasktrail — canvas timeline: lanes per runner context, packed sub-lanes, bars and points in the
 * pynmon palette, hatched ongoing bars, parent→child connectors, event markers, atomic-service windows,
 * drag to zoom, hover and click. Draws 10,000 invocations without a DOM node per element.
 *
 * What it shows fits the data: the x-range is the span of the data inside the window asked for (first
 * start → last end, a small margin each side), not the whole window; a bar is never narrower than
 * MIN_BAR px, so an instant invocation shows. Lane labels are DOM elements over the canvas's label
 * column, which is as wide as the longest label needs (up to 40 % of the width; past that a label is
 * ellipsized and its title holds the whole text). Short-lived runner contexts (pynmon's "collapse
 * external runners") that share parent, host and class can be collapsed into one lane each: on by
 * default when the lanes would not fit on the screen. */
(function () {
  "use strict";
  const TT = (window.TT = window.TT || {});
  const OUTCOMES = new Set(["SUCCESS", "FAILED", "RETRY", "KILLED"]);
  const NICE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5,
                9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];
  const MARKER_COLORS = { triggered: "#28a745", matched: "#0d6efd", unmatched: "#6c757d" };
  const EDGE_COLOR = "#1e293b";          // connectors: dark slate, drawn above the bars with a white halo
  const FONT = "11px system-ui, sans-serif", BOLD = "600 11px system-ui, sans-serif";
  const SHORT_LIVED = 0.1;               // a context active for at most this share of the data's span
  const MARGIN = 0.04;                   // of the data's span, each side of the fitted x-range

  function hatch(ctx) {
    const c = document.createElement("canvas");
    c.width = c.height = 8;
    const g = c.getContext("2d");
    g.strokeStyle = "rgba(255,255,255,0.55)";
    g.lineWidth = 2;
    g.beginPath(); g.moveTo(0, 8); g.lineTo(8, 0); g.stroke();
    return ctx.createPattern(c, "repeat");
  }

  /* Each id as shown on a label: whole up to 12 characters, else its first 8, or as many more as it takes
   * to tell it from the other ids shown. */
  function shortIds(ids) {
    const sorted = Array.from(new Set(ids.filter(Boolean))).sort();
    const out = new Map();
    const common = (a, b) => { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return i; };
    sorted.forEach((id, i) => {
      if (id.length <= 12) { out.set(id, id); return; }
      const need = Math.max(i > 0 ? common(id, sorted[i - 1]) : 0, i + 1 < sorted.length ? common(id, sorted[i + 1]) : 0) + 1;
      const n = Math.max(8, need);
      out.set(id, id.slice(0, n));
    });
    return out;
  }

  /* An entry's first and last time (ms), kept on it. */
  function bounds(e) {
    if (e._lo === undefined) {
      let lo = Infinity, hi = -Infinity;
      for (const s of e.segments) { lo = Math.min(lo, TT.parseTime(s.start)); hi = Math.max(hi, TT.parseTime(s.end)); }
      for (const p of e.points) { const t = TT.parseTime(p.timestamp); lo = Math.min(lo, t); hi = Math.max(hi, t); }
      e._lo = lo; e._hi = hi;
    }
    return e;
  }

  function laneSpan(lane) {
    let lo = Infinity, hi = -Infinity;
    for (const sl of lane.sublanes) for (const e of sl) { bounds(e); lo = Math.min(lo, e._lo); hi = Math.max(hi, e._hi); }
    return hi >= lo ? hi - lo : 0;
  }

  /* Entries of several lanes packed again into sub-lanes (touching is not overlapping, as the server packs). */
  function pack(entries) {
    entries.sort((a, b) => a._lo - b._lo || a._hi - b._hi);
    const sublanes = [], ends = [];
    for (const e of entries) {
      let k = 0;
      while (k < ends.length && ends[k] > e._lo) k++;
      if (k === ends.length) { sublanes.push([]); ends.push(-Infinity); }
      sublanes[k].push(e);
      ends[k] = e._hi;
    }
    return sublanes;
  }

  class Timeline {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.opts = Object.assign({ compact: false, tip: null, onOpen: null, onSelect: null, onZoom: null,
                                  onCollapse: null, collapse: null, fit: true }, opts || {});
      this.rowH = this.opts.compact ? 14 : 18;
      this.minBar = this.opts.compact ? 6 : 8;
      this.minLabelW = this.opts.compact ? 110 : 150;
      this.labelW = this.minLabelW;
      this.userCollapse = this.opts.collapse;   // null: decided from the data (on when lanes overflow)
      this.fit = this.opts.fit !== false;
      this.selected = null;
      this.hits = [];
      this.connectors = [];
      this.data = null;
      this._layers();
      this._bind();
    }

    /* The label layer over the canvas's left column and the lane bar above it (lane count, collapse toggle). */
    _layers() {
      const c = this.canvas, parent = c.parentNode;
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      this.labelLayer = document.createElement("div");
      this.labelLayer.className = "tl-labels";
      parent.insertBefore(this.labelLayer, c.nextSibling);
      const bar = (this.bar = document.createElement("div"));
      bar.className = "tl-bar";
      bar.hidden = true;
      this.laneCount = document.createElement("span");
      this.laneCount.className = "tl-lanes";
      const label = (this.collapseLabel = document.createElement("label"));
      label.className = "tl-collapse-label";
      this.collapseBox = document.createElement("input");
      this.collapseBox.type = "checkbox";
      this.collapseBox.className = "tl-collapse";
      label.append(this.collapseBox, " collapse short-lived runner contexts by host and class");
      label.title = "Contexts of the same runner class on the same host (and under the same parent) that were active "
        + "only briefly, such as one ExternalRunner per client process, share one lane";
      bar.append(this.laneCount, label);
      parent.insertBefore(bar, c);
      this.collapseBox.addEventListener("change", () => this.setCollapse(this.collapseBox.checked, true));
    }

    setData(tl) {
      this.data = tl;
      // The axis's tick interval (pynmon's `resolution`, in s): the API's option, else the constructor's.
      this.resolution = (tl.options && tl.options.resolution_s) || this.opts.resolution || null;
      this.w0 = TT.parseTime(tl.since);
      this.w1 = TT.parseTime(tl.until);
      this.extent = this._extent();
      this.groups = this._groups();
      this._fitView();
      this.collapsed = false;
      if (this.userCollapse === null || this.userCollapse === undefined) {
        this.layout();
        this.collapsed = this.groups.length > 0 && this.height > this._room();
        this.autoCollapse = this.collapsed;
      } else {
        this.collapsed = !!this.userCollapse && this.groups.length > 0;
      }
      this.layout();
      this.draw();
    }

    select(id) { this.selected = id || null; this.draw(); }

    setCollapse(on, byUser) {
      this.userCollapse = !!on;
      if (!this.data) return;
      this.collapsed = !!on && this.groups.length > 0;
      this.layout();
      this.draw();
      if (byUser && this.opts.onCollapse) this.opts.onCollapse(this.collapsed);
    }

    setFit(on) {
      this.fit = !!on;
      if (!this.data) return;
      this._fitView();
      this.draw();
    }

    /* The height the lanes may take before they are "more than fits on the screen". */
    _room() { return Math.max(240, (window.innerHeight || 900) - 200); }

    /* First start → last end of everything drawn, inside the window. */
    _extent() {
      const tl = this.data;
      let lo = Infinity, hi = -Infinity;
      for (const lane of tl.lanes || []) for (const sl of lane.sublanes) for (const e of sl) {
        bounds(e); lo = Math.min(lo, e._lo); hi = Math.max(hi, e._hi);
      }
      for (const m of (tl.markers && tl.markers.markers) || []) { const t = TT.parseTime(m.timestamp); lo = Math.min(lo, t); hi = Math.max(hi, t); }
      for (const w of tl.atomic_windows || []) {
        lo = Math.min(lo, Math.max(TT.parseTime(w.start), this.w0));
        hi = Math.max(hi, Math.min(w.end ? TT.parseTime(w.end) : this.w1, this.w1));
      }
      return isFinite(lo) && isFinite(hi) ? { lo: Math.max(lo, this.w0), hi: Math.min(hi, this.w1) } : null;
    }

    /* The x-range: the window, or with `fit` the data's span — the API's `view` when it answers one (the
     * range its occupancy is bucketed over, the same rule as below), else the span worked out here. */
    _fitView() {
      const ext = this.extent, v = this.data.view;
      if (!this.fit || !ext) { this.t0 = this.w0; this.t1 = this.w1; }
      else if (v && v.fit) { this.t0 = TT.parseTime(v.since); this.t1 = TT.parseTime(v.until); }
      else {
        const span = ext.hi - ext.lo, m = span > 0 ? Math.max(span * MARGIN, 20) : 100;
        this.t0 = Math.max(this.w0, ext.lo - m);
        this.t1 = Math.min(this.w1, ext.hi + m);
        if (this.t1 <= this.t0) { this.t0 = this.w0; this.t1 = this.w1; }
      }
      const ds = this.canvas.dataset;
      ds.windowSince = new Date(this.w0).toISOString();
      ds.windowUntil = new Date(this.w1).toISOString();
      ds.viewSince = new Date(this.t0).toISOString();
      ds.viewUntil = new Date(this.t1).toISOString();
      ds.fit = this.fit ? "on" : "off";
    }

    /* Lanes of short-lived contexts sharing parent, host and class: the groups collapsing would merge. */
    _groups() {
      const lanes = this.data.lanes || [];
      const span = this.extent ? Math.max(this.extent.hi - this.extent.lo, 1) : 1;
      const by = new Map();
      for (const l of lanes) {
        const k = [l.parent_runner_id || "", l.hostname || "", l.runner_class || ""].join("\u0001");
        if (!by.has(k)) by.set(k, []);
        by.get(k).push(l);
      }
      const groups = [];
      for (const ls of by.values()) {
        if (ls.length < 2) continue;
        const spans = ls.map(laneSpan).sort((a, b) => a - b);
        if (spans[spans.length >> 1] > span * SHORT_LIVED) continue;  // half or more of its contexts lived long
        groups.push({ lanes: ls, merged: null });
      }
      return groups;
    }

    _shownLanes() {
      const lanes = this.data.lanes || [];
      if (!this.collapsed) return lanes;
      const of = new Map();
      for (const g of this.groups) for (const l of g.lanes) of.set(l, g);
      const out = [], done = new Set();
      for (const l of lanes) {
        const g = of.get(l);
        if (!g) { out.push(l); continue; }
        if (done.has(g)) continue;
        done.add(g);
        if (!g.merged) {
          const first = g.lanes[0];
          const pids = g.lanes.map((x) => x.pid).filter((p) => p !== null && p !== undefined);
          g.merged = {
            runner_id: "collapsed:" + first.runner_id, runner_class: first.runner_class, hostname: first.hostname,
            pid: null, parent_runner_id: first.parent_runner_id, parent_runner_class: first.parent_runner_class,
            collapsed: true,
            members: g.lanes.map((x) => x.runner_id), pids,
            sublanes: pack(g.lanes.flatMap((x) => x.sublanes.flat())),
          };
        }
        out.push(g.merged);
      }
      return out;
    }

    x(t) { return this.labelW + ((t - this.t0) / (this.t1 - this.t0)) * this.plotW(); }
    t(x) { return this.t0 + ((x - this.labelW) / this.plotW()) * (this.t1 - this.t0); }
    plotW() { return Math.max(40, (this.width || 900) - this.labelW - 12); }

    layout() {
      const tl = this.data;
      const all = tl.lanes || [];
      const lanes = this._shownLanes();
      const byId = new Map(all.map((l) => [l.runner_id, l])), shown = new Set(lanes);
      const ids = shortIds(all.map((l) => l.runner_id).concat(all.map((l) => l.parent_runner_id)));
      const name = (cls, rid) => `${cls || "Runner"}(${ids.get(rid) || rid || "?"})`;
      const rows = [];
      let y = 26;
      this.markerY = null;
      if (tl.markers && tl.markers.markers && tl.markers.markers.length) {
        this.markerY = y + 8;
        rows.push({ kind: "label", y, h: 16, name: "events", sub: `${tl.markers.total}${tl.markers.truncated ? " (truncated)" : ""}` });
        y += 18;
      }
      const windowsBy = {};
      for (const w of tl.atomic_windows || []) (windowsBy[w.runner_id] = windowsBy[w.runner_id] || []).push(w);
      let group = null;
      this.lanePos = {};
      this.invRows = {};
      for (const lane of lanes) {
        const g = lane.parent_runner_id || lane.runner_id;
        if (lane.parent_runner_id && g !== group) {
          const parent = byId.get(lane.parent_runner_id);
          if (!parent || !shown.has(parent)) {
            const cls = parent ? parent.runner_class : lane.parent_runner_class;
            rows.push({ kind: "header", y, h: 16, name: name(cls, lane.parent_runner_id), sub: lane.hostname || "",
                        title: `${cls || "runner"} ${lane.parent_runner_id}${lane.hostname ? " on " + lane.hostname : ""}` });
            y += 16;
          }
        }
        group = g;
        const h = Math.max(1, lane.sublanes.length) * this.rowH + 6;
        const child = !!lane.parent_runner_id;
        let row;
        if (lane.collapsed) {
          const n = lane.members.length;
          const lo = Math.min(...lane.pids), hi = Math.max(...lane.pids);
          row = { kind: "lane", collapsed: true, child, y, h, lane,
                  name: `${lane.runner_class || "Runner"} ×${n} on ${lane.hostname || "?"}`,
                  sub: lane.pids.length ? `pid ${lo}${hi !== lo ? "–" + hi : ""}` : "",
                  title: `${n} ${lane.runner_class || "runner"} contexts on ${lane.hostname || "an unknown host"}, collapsed`
                    + (lane.pids.length ? ` (pid ${lo}${hi !== lo ? "–" + hi : ""})` : "")
                    + `:\n${lane.members.slice(0, 12).join("\n")}${n > 12 ? `\n… ${n - 12} more` : ""}` };
        } else {
          const where = lane.hostname ? `${lane.hostname}${lane.pid ? " pid " + lane.pid : ""}` : "";
          row = { kind: "lane", child, y, h, lane, name: name(lane.runner_class, lane.runner_id), sub: where,
                  title: `${lane.runner_class || "runner"} ${lane.runner_id}${where ? "\n" + where : ""}`
                    + (lane.parent_runner_id ? `\nworker of ${lane.parent_runner_id}` : "") };
        }
        rows.push(row);
        lane.sublanes.forEach((sl, k) => {
          for (const e of sl) {
            (this.invRows[e.invocation_id] = this.invRows[e.invocation_id] || []).push({ y: y + 3 + k * this.rowH, e });
          }
        });
        this.lanePos[lane.runner_id] = y;
        for (const m of lane.members || []) this.lanePos[m] = y;
        y += h;
        const ws = (lane.members || [lane.runner_id]).flatMap((m) => { const w = windowsBy[m] || []; delete windowsBy[m]; return w; });
        if (ws.length) {
          rows.push({ kind: "atomic", child: true, y, h: this.rowH, name: "atomic service", windows: ws, runner: lane.runner_id });
          y += this.rowH;
        }
        y += 2;
      }
      for (const [rid, ws] of Object.entries(windowsBy)) {  // runners with only atomic-service activity
        rows.push({ kind: "atomic", y, h: this.rowH, name: `atomic service ${ids.get(rid) || rid}`, title: rid, windows: ws, runner: rid });
        y += this.rowH + 2;
      }
      this.rows = rows;
      this.shownLanes = lanes.length;
      this.height = Math.min(Math.max(y + 10, 120), 30000);
      this._labels();
      this._laneBar();
    }

    /* One DOM label a row: the name never cut (the column is as wide as the longest needs), the host and
     * pid after it, ellipsized first when the column is at its widest. */
    _labels() {
      const layer = this.labelLayer;
      layer.replaceChildren();
      const m = document.createElement("canvas").getContext("2d");
      let need = 0;
      for (const row of this.rows) {
        const el = document.createElement("div");
        el.className = `tl-label ${row.kind}${row.collapsed ? " collapsed" : ""}${row.child ? " child" : ""}`;
        const nm = document.createElement("span");
        nm.className = "tl-name";
        nm.textContent = row.name;
        el.appendChild(nm);
        m.font = row.kind === "header" || row.collapsed ? BOLD : FONT;
        let w = m.measureText(row.name).width;
        if (row.sub && !this.opts.compact || row.collapsed) {
          const sub = document.createElement("span");
          sub.className = "tl-sub";
          sub.textContent = row.sub;
          el.appendChild(sub);
          m.font = FONT;
          w += 8 + m.measureText(row.sub).width;
        }
        el.title = row.title || [row.name, row.sub].filter(Boolean).join("  ");
        if (row.kind === "lane") el.dataset.runnerId = row.lane.runner_id;
        row.el = el;
        row.need = (row.child ? 14 : 0) + w;
        need = Math.max(need, row.need);
        if (row.child) {
          const tree = document.createElement("span");
          tree.className = "tl-tree";
          tree.textContent = "└";
          row.tree = tree;
          layer.appendChild(tree);
        }
        layer.appendChild(el);
      }
      this.labelNeed = Math.ceil(need) + 20;
    }

    _laneBar() {
      const lanes = this.data.lanes || [];
      const ds = this.canvas.dataset;
      ds.lanes = String(this.shownLanes);
      ds.contexts = String(lanes.length);
      ds.groups = String(this.groups.length);
      ds.collapsed = this.collapsed ? "on" : "off";
      this.bar.hidden = lanes.length === 0;
      this.collapseLabel.hidden = this.groups.length === 0;
      this.collapseBox.checked = this.collapsed;
      const folded = this.collapsed ? this.groups.reduce((n, g) => n + g.lanes.length, 0) : 0;
      this.laneCount.textContent = `${this.shownLanes} lane${this.shownLanes === 1 ? "" : "s"} (${lanes.length} context${lanes.length === 1 ? "" : "s"})`
        + (this.collapsed ? ` · ${folded} short-lived in ${this.groups.length} collapsed group${this.groups.length === 1 ? "" : "s"}` : "")
        + (!this.collapsed && this.groups.length ? ` · ${this.groups.length} group${this.groups.length === 1 ? "" : "s"} of short-lived contexts can be collapsed` : "");
    }

    _placeLabels() {
      const c = this.canvas, layer = this.labelLayer;
      layer.style.left = c.offsetLeft + c.clientLeft + "px";
      layer.style.top = c.offsetTop + c.clientTop + "px";
      layer.style.width = this.labelW + "px";
      layer.style.height = this.height + "px";
      for (const row of this.rows) {
        const indent = row.child ? 14 : 0;
        row.el.style.top = row.y + 1 + "px";
        row.el.style.left = 6 + indent + "px";
        row.el.style.width = Math.max(20, this.labelW - 12 - indent) + "px";
        if (row.tree) { row.tree.style.top = row.y + 1 + "px"; row.tree.style.left = "8px"; }
      }
    }

    /* How many px the widest label lacks (0 when every name and host fits, or the layer is not shown). */
    _labelOverflow() {
      let more = 0;
      for (const row of this.rows) {
        let lack = 0;
        for (const part of row.el.children) lack += Math.max(0, part.scrollWidth - part.clientWidth);
        more = Math.max(more, lack);
      }
      return Math.ceil(more);
    }

    draw() {
      if (!this.data) return;
      const dpr = window.devicePixelRatio || 1;
      this.width = this.canvas.clientWidth || 900;
      const maxW = Math.max(this.minLabelW, Math.floor(this.width * 0.4));
      this.labelW = Math.max(this.minLabelW, Math.min(this.labelNeed || 0, maxW));
      this._placeLabels();
      const more = this._labelOverflow();   // the fonts measured differently from the page's: widen to fit
      if (more > 0 && this.labelW < maxW) {
        this.labelW = Math.min(maxW, this.labelW + more);
        this.labelNeed = Math.max(this.labelNeed || 0, this.labelW);
        this._placeLabels();
      }
      this.canvas.width = this.width * dpr;
      this.canvas.height = this.height * dpr;
      this.canvas.style.height = this.height + "px";
      this.canvas.dataset.plotLeft = String(this.labelW);
      this.canvas.dataset.plotWidth = String(this.plotW());
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, this.width, this.height);
      ctx.font = FONT;
      this.hits = [];
      ctx.fillStyle = "#fafbfc";
      ctx.fillRect(0, 20, this.labelW - 4, this.height - 20);
      this._axis(ctx);
      const pattern = hatch(ctx);
      const sel = this.selected;
      const dim = sel && this.invRows[sel];
      for (const row of this.rows) {
        ctx.strokeStyle = "#eef0f3";
        ctx.beginPath(); ctx.moveTo(0, row.y + row.h + 0.5); ctx.lineTo(this.width, row.y + row.h + 0.5); ctx.stroke();
        if (row.kind === "atomic") this._atomic(ctx, row);
      }
      this.drawn = {};
      for (const row of this.rows) {
        if (row.kind !== "lane") continue;
        row.lane.sublanes.forEach((sl, k) => {
          const y = row.y + 3 + k * this.rowH;
          for (const e of sl) this._entry(ctx, e, y, pattern, dim && e.invocation_id !== sel);
        });
      }
      this._edges(ctx);
      if (sel && this.invRows[sel]) {
        ctx.strokeStyle = "#111827";
        ctx.lineWidth = 2;
        for (const { y, e } of this.invRows[sel]) {  // around what was drawn of it (_entry keeps _x0/_x1)
          const x0 = e._x0 - 3, x1 = e._x1 + 3;
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
      const plotW = this.plotW();
      let step = NICE[NICE.length - 1];
      // A resolution sets the interval when its labels can be told apart (110 px), else the next nice one up.
      const res = this.resolution ? this.resolution * 1000 : 0, readable = (s) => (s / span) * plotW >= 110;
      if (res && readable(res)) step = res;
      else for (const s of NICE) if (s >= res && readable(s)) { step = s; break; }
      ctx.fillStyle = "#6b7280";
      ctx.strokeStyle = "#f1f3f5";
      const first = Math.ceil(this.t0 / step) * step;
      for (let t = first; t <= this.t1; t += step) {
        const x = Math.round(this.x(t));
        ctx.beginPath(); ctx.moveTo(x + 0.5, 20); ctx.lineTo(x + 0.5, this.height); ctx.stroke();
        const d = new Date(t);
        const label = step < 1000 ? TT.fmtTime(t, false).slice(3) : step >= 864e5 ? d.toISOString().slice(5, 10)
          : TT.fmtTime(t, false).slice(0, step < 6e4 ? 8 : 5);
        if (x + 3 + ctx.measureText(label).width <= this.width - 2) ctx.fillText(label, x + 3, 14);  // never cut at the edge
      }
      this.tickStep = step;
      this.canvas.dataset.tickMs = String(step);
    }

    /* One invocation's elements in one row. A bar is at least minBar px wide; a point next to a short bar
     * (an instant run) sits beside it, not on it, so the bar shows between its REGISTERED and SUCCESS dots. */
    _entry(ctx, e, y, pattern, dimmed) {
      const h = this.rowH - 6, r = this.opts.compact ? 3.5 : 4;
      ctx.globalAlpha = dimmed ? 0.35 : 1;
      const short = [];
      let left = Infinity, right = -Infinity;
      for (const s of e.segments) {
        const a = TT.parseTime(s.start), b = TT.parseTime(s.end);
        const x0 = this.x(a), x1 = Math.max(this.x(b), x0 + this.minBar);
        ctx.fillStyle = TT.color(OUTCOMES.has(s.next_status) ? s.next_status : s.status);
        ctx.fillRect(x0, y, x1 - x0, h);
        if (s.ongoing) { ctx.fillStyle = pattern; ctx.fillRect(x0, y, x1 - x0, h); }
        if (x1 - x0 < this.minBar + 2 * r) short.push({ a, b, x0, x1 });
        left = Math.min(left, x0); right = Math.max(right, x1);
        this.hits.push({ x0, x1, y0: y, y1: y + h, inv: e.invocation_id, task: e.task_id, status: s.status, a, b, ongoing: s.ongoing, bar: true });
      }
      for (const p of e.points) {
        const t = TT.parseTime(p.timestamp);
        let x = this.x(t), lo = -Infinity, hi = Infinity;
        for (const s of short) {
          if (t >= s.b) lo = Math.max(lo, s.x1 + r);
          else if (t <= s.a) hi = Math.min(hi, s.x0 - r);
        }
        if (x < lo) x = lo; else if (x > hi) x = hi;
        ctx.fillStyle = TT.color(p.status);
        ctx.beginPath(); ctx.arc(x, y + h / 2, r, 0, Math.PI * 2); ctx.fill();
        ctx.strokeStyle = "#fff"; ctx.stroke();
        left = Math.min(left, x - r); right = Math.max(right, x + r);
        this.hits.push({ x0: x - 5, x1: x + 5, y0: y, y1: y + h, inv: e.invocation_id, task: e.task_id, status: p.status, a: t, b: t });
      }
      ctx.globalAlpha = 1;
      e._x0 = left; e._x1 = right;
      const d = this.drawn[e.invocation_id];
      if (!d) this.drawn[e.invocation_id] = { left, right };
      else { d.left = Math.min(d.left, left); d.right = Math.max(d.right, right); }
    }

    /* Parent → child: from the parent's bar at the child's first time down (or up) to the child's first
     * element, above the bars, dark on a white halo, with an arrowhead at the child. */
    _edges(ctx) {
      this.connectors = [];
      const h = (this.rowH - 6) / 2;
      const first = (r) => bounds(r.e)._lo;
      for (const edge of this.data.edges || []) {
        const c = this.invRows[edge.child], p = this.invRows[edge.parent];
        if (!c || !p) continue;
        const cr = c.reduce((m, r) => (first(r) < first(m) ? r : m));
        const tc = first(cr);
        const pr = p.find((r) => r.e.segments.some((s) => TT.parseTime(s.start) <= tc && TT.parseTime(s.end) >= tc)) || p[0];
        const x = Math.round(this.x(tc));
        const ya = pr.y + h, yb = cr.y + h;
        if (Math.abs(yb - ya) < 2) continue;  // same row: the child follows its parent on the bar itself
        const dir = yb > ya ? 1 : -1;
        const tipY = yb - dir * 4.5;            // stop short of the child's point
        this.connectors.push({ parent: edge.parent, child: edge.child, x, ya, tipY, dir,
                               y0: Math.min(ya, tipY), y1: Math.max(ya, tipY) });
      }
      // All halos first, then all lines: a connector's halo never covers its neighbour's line.
      ctx.lineCap = "butt";
      ctx.strokeStyle = "rgba(255,255,255,0.85)";
      ctx.lineWidth = 3.5;
      ctx.beginPath();
      for (const k of this.connectors) { ctx.moveTo(k.x + 0.5, k.ya); ctx.lineTo(k.x + 0.5, k.tipY); }
      ctx.stroke();
      ctx.strokeStyle = EDGE_COLOR;
      ctx.fillStyle = EDGE_COLOR;
      ctx.lineWidth = 1.5;                      // on whole pixels at x + 0.5: column x is fully inked
      for (const k of this.connectors) {
        const cx = k.x + 0.5, d = k.dir;
        ctx.beginPath(); ctx.moveTo(cx, k.ya); ctx.lineTo(cx, k.tipY - d * 3); ctx.stroke();
        ctx.beginPath(); ctx.moveTo(cx - 3, k.tipY - d * 3.5); ctx.lineTo(cx + 3, k.tipY - d * 3.5); ctx.lineTo(cx, k.tipY); ctx.closePath(); ctx.fill();
        ctx.beginPath(); ctx.arc(cx, k.ya, 2, 0, Math.PI * 2); ctx.fill();
      }
      ctx.lineWidth = 1;
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
      else if (h.atomic) text = `atomic service run ${String(h.atomic.run_id || "?").slice(0, 8)}\n${h.atomic.status}\n${TT.fmtTime(h.a)} → ${h.atomic.end ? TT.fmtTime(h.b, false) : "running"}${h.atomic.reason ? "\n" + h.atomic.reason : ""}`;
      else text = `${h.task || "?"}\n${h.inv}\n${h.status}${h.a !== h.b ? ` ${TT.fmtDur((h.b - h.a) / 1000)}` : h.bar ? " (instant)" : ""}${h.ongoing ? " (ongoing)" : ""}\n${TT.fmtTime(h.a)}`;
      tip.textContent = text;
      tip.hidden = false;
      const r = this.canvas.getBoundingClientRect();
      const px = ev.clientX - r.left + 14 + this.canvas.offsetLeft, py = ev.clientY - r.top + 14 + this.canvas.offsetTop;
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
      window.addEventListener("mouseup", () => {
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

  /* The occupancy histogram under the timeline: the API's `occupancy` (query/occupancy.py — pynmon's, stacked
   * by task, the busiest at the bottom, in the task colours of charts.js), on the timeline's x-range (`view`
   * {t0, t1} in ms) so its buckets line up with the bars above. `info`: an element told the true peak
   * ("max N in flight": invocations in a shown status at one instant, not a bucket's height). What it drew
   * is kept on canvas.drawn ({bucket, task, count, x0, x1, y0, y1}) and canvas.dataset, for readers and tests. */
  TT.drawOccupancy = function (canvas, tl, labelW, view, info) {
    const occ = tl.occupancy || { categories: [], buckets: [], bucket_s: 1, series: [], max: 0,
                                  peak: { in_flight: 0, by_status: {} } };
    const t0 = view ? view.t0 : TT.parseTime(occ.since || tl.since), t1 = view ? view.t1 : TT.parseTime(occ.until || tl.until);
    const span = Math.max(t1 - t0, 1);
    const dpr = window.devicePixelRatio || 1, W = canvas.clientWidth || 900, H = canvas.height / (canvas._dpr || 1);
    canvas._dpr = dpr;
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const L = labelW || 240, plotW = Math.max(40, W - L - 12);
    const x = (t) => L + ((t - t0) / span) * plotW;
    const size = occ.bucket_s * 1000, starts = occ.buckets.map(TT.parseTime), n = starts.length;
    const color = TT.taskColor || ((t) => (t === "Other" ? "#bdc3c7" : "#3498db"));
    let max = 1;
    for (let i = 0; i < n; i++) max = Math.max(max, occ.series.reduce((m, s) => m + s.counts[i], 0));
    const drawn = [];
    for (let i = 0; i < n; i++) {
      const a = Math.max(x(starts[i]), L), b = Math.min(x(starts[i] + size), L + plotW);
      if (b <= a) continue;
      let y = H - 14;
      for (const s of occ.series) {
        const c = s.counts[i];
        if (!c) continue;
        const h = (c / max) * (H - 24);
        ctx.fillStyle = color(s.task_id);
        ctx.fillRect(a, y - h, Math.max(1, b - a - 1), h);
        drawn.push({ bucket: i, task: s.task_id, count: c, x0: a, x1: Math.max(a + 1, b - 1), y0: y - h, y1: y });
        y -= h;
      }
    }
    ctx.fillStyle = "#6b7280";
    ctx.font = FONT;
    ctx.fillText(`${max}`, 6, 14);
    ctx.fillText(`per ${TT.fmtStep(occ.bucket_s)}`, 6, 30);
    ctx.fillText(occ.categories.join(" · ") || "no status chosen", 6, H - 4);
    const peak = occ.peak || { in_flight: 0, by_status: {} };
    if (info) {
      const parts = Object.entries(peak.by_status).map(([c, k]) => `${c} ${k}`);
      info.textContent = occ.categories.length
        ? `max ${peak.in_flight} in flight${parts.length > 1 ? ` (${parts.join(" · ")})` : ""}`
          + ` · the tallest ${TT.fmtStep(occ.bucket_s)} bucket holds ${occ.max}`
          + (peak.at ? ` · peak at ${TT.fmtTime(TT.parseTime(peak.at))}` : "")
        : "Select at least one status.";
      info.dataset.peak = String(peak.in_flight);
    }
    canvas.drawn = drawn;
    const ds = canvas.dataset;
    ds.buckets = String(n);
    ds.bucketMs = String(size);
    ds.max = String(occ.max);
    ds.peak = String(peak.in_flight);
    ds.categories = occ.categories.join(",");
    ds.series = occ.series.map((s) => s.task_id).join("\n");
  };

  TT.Timeline = Timeline;
})();
