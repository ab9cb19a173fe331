/* tasktrail — a runs table's row menu (issue 19, docs/control.md): Abort or Re-run one row after a confirmation
 * step, then the command's state in the row, from /api/v1/commands/{id} until it is final, with a link to a
 * re-run's new invocation. The POST is same-origin, so the CSRF check passes; a refusal shows its message. */
(function () {
  "use strict";
  const TT = window.TT;

  function badge(cell, state, text) {
    cell.textContent = "";
    const b = document.createElement("span");
    b.className = "badge cmd-" + state;
    b.textContent = state;
    cell.appendChild(b);
    if (text) cell.appendChild(document.createTextNode(" " + text));
  }

  function follow(cell, commandId) {
    fetch("/api/v1/commands/" + encodeURIComponent(commandId), { headers: { Accept: "application/json" } })
      .then((r) => r.json().then((c) => ({ ok: r.ok, c })))
      .then(({ ok, c }) => {
        if (!ok) { badge(cell, "refused", (c.error && c.error.message) || "the command could not be read"); return; }
        badge(cell, c.state, c.reason || "");
        cell.dataset.state = c.state;
        if (c.new_invocation_id) {
          cell.appendChild(document.createTextNode(" ↻ "));
          const a = document.createElement("a");
          a.className = "id rerun-as";
          a.href = "/invocations/" + TT.seg(c.new_invocation_id);
          a.dataset.invocationId = c.new_invocation_id;
          a.title = c.new_invocation_id;
          a.textContent = c.new_invocation_id.slice(0, 8);
          cell.appendChild(a);
        }
        if (!c.is_final) setTimeout(() => follow(cell, commandId), 500);
      })
      .catch(() => setTimeout(() => follow(cell, commandId), 2000));
  }

  document.querySelectorAll("details.row-menu").forEach((menu) => {
    const confirmBox = menu.querySelector(".row-confirm");
    const cell = menu.parentElement.querySelector(".row-command");
    let pending = null;
    menu.querySelectorAll("button[data-kind]").forEach((b) => b.addEventListener("click", () => {
      pending = b.dataset.kind;
      confirmBox.querySelector(".row-confirm-text").textContent = (pending === "abort" ? "Abort " : "Re-run ")
        + menu.dataset.what + " " + menu.dataset.target + "?";
      confirmBox.hidden = false;
    }));
    menu.querySelector(".row-no").addEventListener("click", () => { confirmBox.hidden = true; pending = null; });
    menu.querySelector(".row-yes").addEventListener("click", () => {
      confirmBox.hidden = true;
      const kind = pending;
      pending = null;
      if (!kind) return;
      const appQ = menu.dataset.app ? "?app=" + encodeURIComponent(menu.dataset.app) : "";
      fetch(menu.dataset.base + "/" + kind + appQ, { method: "POST", headers: { Accept: "application/json" } })
        .then((r) => r.json().then((body) => ({ status: r.status, body })))
        .then(({ status, body }) => {
          menu.open = false;
          if (status === 202) { badge(cell, "requested", ""); follow(cell, body.command_id); }
          else badge(cell, "refused", (body.error && body.error.message) || "refused (" + status + ")");
        })
        .catch(() => badge(cell, "refused", "the request did not reach tasktrail"));
    });
  });
})();
