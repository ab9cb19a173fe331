/* tasktrail — /runs: date presets fill `since` and apply. */
(function () {
  "use strict";
  const form = document.getElementById("runs-form");
  form.querySelectorAll("[data-since]").forEach((b) => b.addEventListener("click", () => {
    document.getElementById("runs-since").value = b.dataset.since;
    form.submit();
  }));
})();
