// The batch page: every analysis' state, progress and time, refreshed every two
// seconds until all have ended.
(function () {
  "use strict";

  const main = document.getElementById("batch-main");
  if (!main || main.dataset.finished === "1") return;
  const colours = {
    queued: "secondary",
    running: "primary",
    succeeded: "success",
    failed: "danger",
    cancelled: "warning",
  };

  function show(data) {
    for (const [state, count] of Object.entries(data.counts)) {
      const badge = main.querySelector(`[data-count="${state}"]`);
      if (badge) badge.textContent = `${count} ${state}`;
    }
    for (const analysis of data.analyses) {
      const row = main.querySelector(`tr[data-analysis="${analysis.id}"]`);
      if (!row) continue;
      const state = row.querySelector('[data-field="state"]');
      state.textContent = analysis.state[0].toUpperCase() + analysis.state.slice(1);
      state.className = `badge text-bg-${colours[analysis.state]}`;
      const bar = row.querySelector(".progress-bar");
      bar.style.width = `${analysis.progress}%`;
      bar.parentElement.setAttribute("aria-valuenow", Math.round(analysis.progress));
      let message = analysis.message;
      if (analysis.state === "failed") message = analysis.error;
      else if (analysis.position) message = `position ${analysis.position} in the queue`;
      row.querySelector('[data-field="message"]').textContent = message;
      row.querySelector('[data-field="elapsed"]').textContent = analysis.elapsed;
    }
    if (data.finished) {
      main.dataset.finished = "1";
      document.querySelectorAll("[data-until-finished]").forEach((note) => note.remove());
      const cancel = document.getElementById("batch-cancel");
      if (cancel) cancel.disabled = true;
    }
  }

  async function poll() {
    try {
      const response = await fetch(main.dataset.statusUrl, {
        headers: { Accept: "application/json" },
      });
      if (response.ok) show(await response.json());
    } catch (error) {
      // A dropped connection: try again at the next tick.
    }
    if (main.dataset.finished !== "1") setTimeout(poll, 2000);
  }
  setTimeout(poll, 1000);
})();
