/* tasktrail — common page behaviour: page data, times, live refresh, app switcher, cross-highlighting. */
(function () {
  "use strict";
  const TT = (window.TT = window.TT || {});
  const blob = document.getElementById("page-data");
  TT.data = blob ? JSON.parse(blob.textContent) : {};

  TT.STATUS_COLORS = {
    REGISTERED: "#95a5a6", CONCURRENCY_CONTROLLED: "#e67e22", CONCURRENCY_CONTROLLED_FINAL: "#d35400",
    REROUTED: "#16a085", PENDING: "#f39c12", PENDING_RECOVERY: "#e67e22", RUNNING: "#3498db",
    RUNNING_RECOVERY: "#e67e22", PAUSED: "#1abc9c", KILLED: "#c0392b", SUCCESS: "#27ae60",
    FAILED: "#e74c3c", RETRY: "#9b59b6",
  };
  TT.color = (s) => TT.STATUS_COLORS[s] || "#7f8c8d";
  TT.parseTime = (s) => (s ? Date.parse(s) : NaN);
  // An id as one URL path segment (proto/urlpath.py): every reserved character encoded ('/' too); an id of
  // dots only as "~2E" per dot (browsers drop "." and ".." segments, even %2E); a "~2E"-looking id keeps its
  // "~" encoded.
  TT.seg = function (id) {
    const s = encodeURIComponent(String(id)).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
    if (/^\.+$/.test(s)) return s.replace(/\./g, "~2E");
    if (/^(~2[Ee])+$/.test(s)) return s.replace(/~/g, "%7E");
    return s;
  };

  TT.fmtTime = function (ms, withDate) {
    if (!isFinite(ms)) return "—";
    const d = new Date(ms);
    const p = (n, w) => String(n).padStart(w || 2, "0");
    const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
    return withDate === false ? t : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${t}`;
  };
  TT.fmtAge = function (ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${s.toFixed(0)} s ago`;
    if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  };
  TT.fmtDur = function (s) {
    if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
    if (s < 120) return `${s.toFixed(1)} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${(s / 3600).toFixed(1)} h`;
  };

  /* A bucket or step size as a legend says it: "250 ms", "30 s", "5 min", "1 h", "1.5 d" (never "30 min 0 s"). */
  TT.fmtStep = function (s) {
    const n = (v) => String(Math.round(v * 10) / 10);
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${n(s)} s`;
    if (s < 3600) return `${n(s / 60)} min`;
    if (s < 86400) return `${n(s / 3600)} h`;
    return `${n(s / 86400)} d`;
  };

  function renderTimes() {
    document.querySelectorAll("time[datetime]").forEach((el) => {
      const ms = TT.parseTime(el.getAttribute("datetime"));
      if (!isFinite(ms)) return;
      el.title = el.getAttribute("datetime");
      el.textContent = el.classList.contains("age") ? TT.fmtAge(ms) : TT.fmtTime(ms);
      if (el.hasAttribute("data-rel")) {  // the absolute time and, beside it, how long ago
        let rel = el.nextElementSibling;
        if (!rel || !rel.classList.contains("rel")) {
          rel = document.createElement("span"); rel.className = "rel muted";
          el.after(rel);
        }
        rel.textContent = " (" + TT.fmtAge(ms) + ")";
      }
    });
    document.querySelectorAll(".live-dur[data-since]").forEach((el) => {
      const ms = TT.parseTime(el.dataset.since);
      if (isFinite(ms)) el.textContent = TT.fmtDur((Date.now() - ms) / 1000) + " …";
    });
  }
  TT.renderTimes = renderTimes;

  /* A byte count as the pages write it (binary units, like Jinja's filesizeformat(true)). */
  TT.fmtBytes = function (n) {
    if (n < 1024) return `${n} Bytes`;
    const units = ["KiB", "MiB", "GiB", "TiB"];
    let v = n / 1024, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(1)} ${units[i]}`;
  };
  /* The cell of a log line's message: its preview and, when the body was cut, its size and a link to the
   * whole line (the `values.message` the API describes it with). */
  TT.messageCell = function (td, l) {
    const pre = document.createElement("pre");
    pre.textContent = l.message || "";
    td.appendChild(pre);
    const v = l.values && l.values.message;
    if (v && v.truncated && v.url) {
      const p = document.createElement("p"); p.className = "value-cut";
      const size = document.createElement("span"); size.className = "muted";
      size.textContent = `${TT.fmtBytes(v.bytes)}, showing the first ${TT.fmtBytes(v.preview_bytes)}`;
      const a = document.createElement("a"); a.className = "download"; a.href = v.url; a.download = "";
      a.textContent = "Download whole line";
      p.append(size, " · ", a);
      td.appendChild(p);
    }
    return td;
  };

  function appSwitcher() {
    const sel = document.getElementById("app-switch");
    if (!sel) return;
    fetch("/api/v1/apps", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : []))
      .then((apps) => {
        for (const a of apps) {
          const o = document.createElement("option");
          o.value = a.app_id;
          o.textContent = `${a.app_id} (${a.invocations})`;
          if (a.app_id === sel.dataset.current) o.selected = true;
          sel.appendChild(o);
        }
      })
      .catch(() => {});
    sel.addEventListener("change", () => {
      const u = new URL(location.href);
      if (sel.value) u.searchParams.set("app", sel.value);
      else u.searchParams.delete("app");
      u.searchParams.delete("cursor");
      location.href = u.toString();
    });
  }

  function crossHighlight() {
    document.addEventListener("mouseover", (e) => {
      const el = e.target.closest("[data-invocation-id],[data-runner-id]");
      document.querySelectorAll(".highlight").forEach((h) => h.classList.remove("highlight"));
      if (!el) return;
      const key = el.dataset.invocationId ? "data-invocation-id" : "data-runner-id";
      const val = el.getAttribute(key);
      document.querySelectorAll(`tr[${key}="${CSS.escape(val)}"], li[${key}="${CSS.escape(val)}"]`)
        .forEach((h) => h.classList.add("highlight"));
    });
  }

  function liveRefresh() {
    const live = document.querySelector('[data-live="on"]');
    const stamp = document.getElementById("refreshed");
    if (stamp) stamp.textContent = "loaded " + TT.fmtTime(Date.now(), false) + (live ? " · refreshing every 5 s while something runs" : "");
    if (!live) return;
    setTimeout(() => {
      sessionStorage.setItem("tt-scroll:" + location.pathname + location.search, String(window.scrollY));
      location.reload();
    }, 5000);
  }

  function restoreScroll() {
    const key = "tt-scroll:" + location.pathname + location.search;
    const y = sessionStorage.getItem(key);
    if (y !== null) {
      window.scrollTo(0, Number(y));
      sessionStorage.removeItem(key);
    }
  }

  renderTimes();
  setInterval(renderTimes, 1000);
  appSwitcher();
  crossHighlight();
  restoreScroll();
  liveRefresh();
})();
