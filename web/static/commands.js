/* tasktrail — abort and re-run on the invocation and workflow run pages (issue 19, docs/control.md): a confirmation step,
 * the POST (same origin: the CSRF check passes), then the command's states live from
 * /api/v1/invocations/{id}/control until every command is final. */
(function () {
  "use strict";
  const TT = window.TT;
  const box = document.getElementById("commands");
  if (!box) return;
  const id = box.dataset.target;
  const base = box.dataset.base;     // /api/v1/invocations/{id} or /api/v1/workflows/runs/{id}
  const what = box.dataset.what;
  // ?app= when the page names the app (an id two apps share): the same target for the reads and the POST
  const appQ = box.dataset.app ? "?app=" + encodeURIComponent(box.dataset.app) : "";
  const confirmBox = document.getElementById("confirm");
  const errorBox = document.getElementById("command-error");
  let pending = null;
  let timer = null;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function invLink(inv) {
    const a = el("a", { class: "id", href: "/invocations/" + TT.seg(inv), "data-invocation-id": inv, title: inv }, inv.slice(0, 8));
    return a;
  }

  function render(ctl) {
    const table = document.getElementById("command-list");
    const body = table.querySelector("tbody");
    body.textContent = "";
    ctl.commands.forEach((c) => {
      const tr = el("tr", { "data-command-id": c.command_id, "data-state": c.state });
      tr.appendChild(el("td", {}, c.kind));
      const st = el("td", { class: "cmd-state" });
      st.appendChild(el("span", { class: "badge cmd-" + c.state }, c.state));
      tr.appendChild(st);
      tr.appendChild(el("td", {}, c.runner_id || ""));
      tr.appendChild(el("td", {}, c.requested_at || ""));
      tr.appendChild(el("td", {}, c.requested_by || ""));
      const out = el("td", { class: "cmd-outcome" }, c.reason || "");
      if (c.new_invocation_id) { out.appendChild(document.createTextNode(" → ")); out.appendChild(invLink(c.new_invocation_id)); }
      tr.appendChild(out);
      body.appendChild(tr);
    });
    table.hidden = ctl.commands.length === 0;
    if (ctl.reruns && ctl.reruns.length) {
      let p = document.getElementById("reruns");
      if (!p) { p = el("p", { id: "reruns" }); box.insertBefore(p, box.children[1]); }
      p.textContent = "↻ re-run as ";
      ctl.reruns.forEach((r, i) => { if (i) p.appendChild(document.createTextNode(", ")); p.appendChild(invLink(r)); });
    }
    ["abort", "rerun"].forEach((kind) => {
      const b = document.getElementById(kind + "-btn");
      if (b) b.hidden = !ctl[kind] || ctl.commands.some((c) => !c.is_final && c.kind === kind);
    });
    return ctl.commands.every((c) => c.is_final);
  }

  function follow() {
    clearTimeout(timer);
    fetch(base + "/control" + appQ, { headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then((ctl) => { if (!render(ctl)) timer = setTimeout(follow, 500); })
      .catch(() => { timer = setTimeout(follow, 2000); });
  }

  function send(kind) {
    errorBox.hidden = true;
    fetch(base + "/" + kind + appQ, { method: "POST", headers: { Accept: "application/json" } })
      .then((r) => r.json().then((body) => ({ ok: r.status === 202, body })))
      .then(({ ok, body }) => {
        if (!ok) { errorBox.textContent = (body.error && body.error.message) || "refused"; errorBox.hidden = false; }
        follow();
      })
      .catch(() => { errorBox.textContent = "the request did not reach tasktrail"; errorBox.hidden = false; });
  }

  box.querySelectorAll("button.action[data-kind]").forEach((b) => b.addEventListener("click", () => {
    pending = b.dataset.kind;
    document.getElementById("confirm-text").textContent = pending === "abort"
      ? "Abort " + what + " " + id + "? The app's agent cancels what is unfinished; work already done is not undone."
      : "Re-run " + what + " " + id + " with the same task and arguments? A new invocation is created.";
    confirmBox.hidden = false;
  }));
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  if (yes) yes.addEventListener("click", () => { confirmBox.hidden = true; if (pending) send(pending); pending = null; });
  if (no) no.addEventListener("click", () => { confirmBox.hidden = true; pending = null; });
  if (box.dataset.live === "yes") follow();
})();
