/* tasktrail — invocation detail: the family graph (cytoscape) and the family's own timeline,
 * cross-highlighted: selecting a node highlights its bars, clicking a bar selects its node. The family and
 * the log lines arrive after the page shows (invocation-parts-1.js: TT.invocationParts). */
(function () {
  "use strict";
  const TT = window.TT;
  const d = TT.data;
  const tip = document.createElement("div");
  tip.className = "tip"; tip.hidden = true;
  const mini = document.getElementById("family-timeline");
  mini.parentNode.style.position = "relative";
  mini.parentNode.appendChild(tip);
  let cy = null;

  const timeline = new TT.Timeline(mini, {
    compact: true, tip,
    onSelect: (id) => select(id, "timeline"),
  });
  TT.familyTimeline = timeline;

  function select(id, from) {
    timeline.select(id);
    document.querySelectorAll("#family-list li").forEach((li) => li.classList.toggle("highlight", li.dataset.invocationId === id));
    if (cy && from !== "graph") {
      cy.$("node").unselect();
      cy.$id(id).select();
    }
    document.getElementById("family-list").dataset.selected = id;
  }

  // The graph draws the list: one row per node in tree order, indented by depth, its label to its right;
  // an edge leaves its parent downwards and turns right into the child, so it never crosses a label (the
  // rows between a parent and its child are that parent's descendants, further right).
  const ROW = 34, COL = 26;
  function drawFamily(fam) {
    if (window.cytoscape && fam.nodes.length) {
      cy = window.cytoscape({
        container: document.getElementById("family-graph"),
        elements: [
          ...fam.nodes.map((n, i) => ({ data: { id: n.invocation_id, label: `${n.task_id || "?"} · ${n.invocation_id.slice(0, 8)}`, color: TT.color(n.status), self: n.invocation_id === d.invocation_id ? 1 : 0 },
                                        position: { x: n.depth * COL, y: i * ROW } })),
          ...fam.edges.map((e) => ({ data: { id: `${e.parent}->${e.child}`, source: e.parent, target: e.child, kind: e.kind } })),
        ],
        style: [
          { selector: "node", style: { "background-color": "data(color)", label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "right", "text-margin-x": 6, width: 14, height: 14, color: "#374151", "text-background-color": "#fcfcfd", "text-background-opacity": 1, "text-background-padding": 1 } },
          { selector: "node[self = 1]", style: { "border-width": 3, "border-color": "#111827" } },
          { selector: "node:selected", style: { "border-width": 4, "border-color": "#f59e0b" } },
          { selector: "edge", style: { width: 1.5, "line-color": "#94a3b8", "target-arrow-shape": "triangle", "target-arrow-color": "#94a3b8", "curve-style": "taxi", "taxi-direction": "downward", "taxi-turn": "100%", "arrow-scale": 0.8 } },
          { selector: "edge[kind = 'event']", style: { "line-color": "#0d9488", "target-arrow-color": "#0d9488" } },
          { selector: "edge[kind = 'trigger']", style: { "line-color": "#7c3aed", "target-arrow-color": "#7c3aed", "line-style": "dashed" } },
        ],
        layout: { name: "preset", fit: true, padding: 16 },
        minZoom: 0.2, maxZoom: 1.5,  // a one-node family is a small dot, not the whole box
      });
      const legend = document.getElementById("edge-legend");
      const kinds = new Set(fam.edges.map((e) => e.kind));
      legend.querySelectorAll("[data-kind]").forEach((el) => { el.hidden = !kinds.has(el.dataset.kind); });
      legend.hidden = kinds.size === 0;
      cy.on("tap", "node", (ev) => select(ev.target.id(), "graph"));
      cy.on("dbltap", "node", (ev) => { location.href = "/invocations/" + TT.seg(ev.target.id()); });
      window.TT.cy = cy;
    }
    document.querySelectorAll("#family-list li").forEach((li) => li.addEventListener("click", (ev) => {
      if (ev.target.closest("a")) return;
      select(li.dataset.invocationId, "list");
    }));
    familyTimeline(fam);
  }

  // While it runs: stream its log lines (once the lines so far are shown), and reload once its status changes.
  function tailLogs() {
    const tbody = document.querySelector("#inv-logs tbody");
    const src = new EventSource("/api/v1/logs/tail?" + new URLSearchParams({ invocation: d.invocation_id }));
    src.addEventListener("log", (ev) => {
      const l = JSON.parse(ev.data);
      const tr = tbody.insertRow();
      tr.className = "lvl-" + (l.level || "");
      tr.insertCell().textContent = TT.fmtTime(TT.parseTime(l.timestamp));
      tr.insertCell().textContent = l.level || "";
      tr.insertCell().textContent = l.runner_label || l.worker_id || l.runner_id || "";
      TT.messageCell(tr.insertCell(), l);
      const empty = document.getElementById("inv-logs-empty"); if (empty) empty.remove();
    });
    TT.invocationTail = src;
    setInterval(() => {
      fetch("/api/v1/invocations/" + TT.seg(d.invocation_id)).then((r) => r.json())
        .then((now) => { if (now.status && now.status !== d.status) { src.close(); location.reload(); } });
    }, 5000);
  }

  // The family's own timeline, from its first record to its last (to now for what still runs).
  function familyTimeline(fam) {
    const times = fam.nodes.map((n) => TT.parseTime(n.created_at)).filter(isFinite);
    const ends = fam.nodes.map((n) => (n.is_final === false ? Date.now() : TT.parseTime(n.updated_at || n.created_at)))
      .filter(isFinite);
    const start = Math.min(...times), end = Math.max(...ends, start + 1000);
    const pad = Math.max((end - start) * 0.05, 50);
    const since = new Date(start - pad).toISOString(), until = new Date(end + pad).toISOString();
    const link = document.getElementById("family-timeline-link");
    const linkParams = new URLSearchParams({ since, until, selected: d.invocation_id });
    // The workflow filter only when the whole family is that workflow's (a triggered child may not be).
    if (d.workflow && d.workflow.id && fam.nodes.every((n) => n.workflow_id === d.workflow.id)) {
      linkParams.set("workflow", d.workflow.id);
    }
    link.dataset.since = since; link.dataset.until = until;
    link.href = "/timeline?" + linkParams.toString();
    const q = new URLSearchParams({ since, until, limit: "2000" });
    fam.nodes.forEach((n) => q.append("invocations", n.invocation_id)); // one per value: ids may hold commas
    fetch("/api/v1/timeline?" + q)
      .then((r) => r.json())
      .then((body) => { if (body.lanes) { timeline.setData(body); select(d.invocation_id); } });
  }

  TT.invocationParts.family.then((fam) => { if (fam) drawFamily(fam); });
  if (document.getElementById("inv-top").dataset.running === "yes") TT.invocationParts.logs.then(tailLogs);
})();
