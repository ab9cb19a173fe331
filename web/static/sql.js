/* tasktrail — the SQL page: run one read-only query, show it as a table, download it as CSV. */
(function () {
  "use strict";
  const form = document.getElementById("sql-form");
  const text = document.getElementById("sql-text");
  const out = document.getElementById("sql-result");
  const status = document.getElementById("sql-status");
  const csvButton = document.getElementById("sql-csv");
  let last = null;

  const cell = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));

  function render(res) {
    out.replaceChildren();
    const table = document.createElement("table");
    table.className = "grid";
    table.id = "sql-table";
    const head = table.createTHead().insertRow();
    for (const c of res.columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
    const body = table.createTBody();
    for (const row of res.rows) {
      const tr = body.insertRow();
      for (const v of row) tr.insertCell().textContent = cell(v);
    }
    out.appendChild(table);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    status.textContent = "running…";
    const t0 = performance.now();
    fetch("/api/v1/sql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sql: text.value }) })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        if (!ok) {
          last = null; csvButton.disabled = true;
          out.replaceChildren(Object.assign(document.createElement("p"), { className: "error-message", textContent: body.error.message }));
          status.textContent = "";
          return;
        }
        last = body;
        csvButton.disabled = false;
        render(body);
        status.textContent = `${body.rows.length} rows${body.truncated ? ` (truncated: ${body.notice || "at the row cap"})` : ""} in ${(performance.now() - t0).toFixed(0)} ms`;
        const u = new URL(location.href); u.searchParams.set("sql", text.value); history.replaceState(null, "", u);
      });
  });

  csvButton.addEventListener("click", () => {
    if (!last) return;
    const esc = (v) => { const s = cell(v); return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
    const lines = [last.columns.map(esc).join(","), ...last.rows.map((r) => r.map(esc).join(","))];
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "tasktrail-query.csv";
    document.body.appendChild(a); a.click(); a.remove();
  });
})();
