/* tasktrail — the invocation page's family and log lines, loaded after the page shows (as pynmon does):
 * GET /api/v1/invocations/{id}/family and /logs, drawn into the page's placeholders as the server drew them
 * before (the same list items, pills, links, runner labels and cut notes). TT.invocationParts.family and
 * .logs are promises of the JSON (null when a read failed); invocation.js draws the graph, the family
 * timeline and the live tail from them. Each card says data-loaded="yes" (or "failed") once filled. */
(function () {
  "use strict";
  const TT = window.TT;
  const d = TT.data;
  const labelsBlob = document.getElementById("runner-labels");
  const labels = labelsBlob ? JSON.parse(labelsBlob.textContent) || {} : {};
  const app = new URLSearchParams(location.search).get("app");
  const base = "/api/v1/invocations/" + TT.seg(d.invocation_id);
  const query = app ? "?" + new URLSearchParams({ app }) : "";
  const KIND_TITLE = { direct: "child", event: "child of an event it emitted", trigger: "triggered" };
  const KIND_MARK = { direct: "└", event: "└ev", trigger: "└tr" };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const muted = () => el("span", "muted", "—");
  function pill(status) { return status ? el("span", "pill s-" + status, status) : muted(); }
  function invLink(id) {
    if (!id) return muted();
    const a = el("a", "id", Array.from(id).slice(0, 8).join(""));
    a.href = "/invocations/" + TT.seg(id);
    a.dataset.invocationId = id; a.title = id;
    return a;
  }
  /* A runner as the `runner` macro (_macros.html) draws it, with the label the page was given. */
  function runnerLink(id) {
    if (!id) return muted();
    const a = el("a", "runner-label");
    a.href = "/runners/" + TT.seg(id);
    a.dataset.runnerId = id; a.title = id;
    const l = labels[id];
    if (!l) { a.appendChild(el("span", "rl-id id", id)); return a; }
    if (l.runner_class) a.appendChild(el("span", "rl-class", l.runner_class));
    if (l.pid || l.hostname) a.append(" ", el("span", "rl-where", (l.hostname || "?") + (l.pid ? "/" + l.pid : "")));
    if (l.short) a.append(" ", el("span", "rl-id id", l.short));
    return a;
  }
  function time(value) {
    if (!value) return muted();
    const t = el("time", null, value);
    t.setAttribute("datetime", value);
    return t;
  }

  function get(path) {
    return fetch(base + path + query, { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(path + ": HTTP " + r.status))));
  }
  function failed(card, holder, what) {
    card.dataset.loaded = "failed";
    holder.textContent = "Could not load " + what + "; reload the page to try again.";
    holder.className = "error-message";
    return null;
  }

  function fillFamily(fam) {
    const kindOf = {};
    fam.edges.forEach((e) => { if (!(e.child in kindOf)) kindOf[e.child] = e.kind; });
    const list = document.getElementById("family-list");
    for (const n of fam.nodes) {
      const li = el("li");
      li.dataset.depth = n.depth;
      li.dataset.invocationId = n.invocation_id;
      li.style.paddingLeft = (4 + 18 * Math.min(n.depth, 12)) + "px";
      if (n.depth) {
        const kind = kindOf[n.invocation_id] || "direct";
        const mark = el("span", "edge-kind k-" + kind, KIND_MARK[kind]);
        mark.title = KIND_TITLE[kind];
        li.append(mark, " ");
      }
      li.append(pill(n.status), " ", invLink(n.invocation_id), " ", el("span", "task", n.task_id || ""));
      list.appendChild(li);
    }
    document.getElementById("family-count").textContent =
      `${fam.nodes.length} invocations` + (fam.truncated ? ", truncated" : "");
    document.getElementById("family-card").dataset.loaded = "yes";
    return fam;
  }

  function fillLogs(lines) {
    const tbody = document.querySelector("#inv-logs tbody");
    const holder = document.getElementById("inv-logs-loading");
    const rows = document.createDocumentFragment();
    for (const l of lines) {
      const tr = el("tr", "lvl-" + (l.level || ""));
      tr.insertCell().appendChild(time(l.timestamp));
      tr.insertCell().textContent = l.level || "";
      tr.insertCell().appendChild(runnerLink(l.worker_id || l.runner_id));
      TT.messageCell(tr.insertCell(), l);
      rows.appendChild(tr);
    }
    tbody.insertBefore(rows, tbody.firstChild);  // before any line the live tail added meanwhile
    if (lines.length) holder.remove();
    else { holder.id = "inv-logs-empty"; holder.className = "empty"; holder.textContent = "No log lines for this invocation yet."; }
    document.getElementById("logs-card").dataset.loaded = "yes";
    TT.renderTimes();
    return lines;
  }

  TT.invocationParts = {
    family: get("/family").then(fillFamily, () => failed(document.getElementById("family-card"),
                                                          document.getElementById("family-count"), "the family")),
    logs: get("/logs").then(fillLogs, () => failed(document.getElementById("logs-card"),
                                                   document.getElementById("inv-logs-loading"), "the log lines")),
  };
})();
