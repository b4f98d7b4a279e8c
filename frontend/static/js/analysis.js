// The analysis page: live state, progress and log while the run goes on, then the
// results swapped in without a reload. Result tables sort and page in the browser.
(function () {
  "use strict";

  const main = document.getElementById("analysis-main");

  function setupTables(root) {
    root.querySelectorAll("table.result-table").forEach((table) => {
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const pageSize = Number(table.dataset.pageSize) || 25;
      let page = 0;
      const nav = document.createElement("div");
      nav.className = "d-flex align-items-center gap-2 small";
      nav.innerHTML =
        '<button type="button" class="btn btn-sm btn-outline-secondary prev">Previous</button>' +
        '<span class="pages" aria-live="polite"></span>' +
        '<button type="button" class="btn btn-sm btn-outline-secondary next">Next</button>';
      table.parentElement.after(nav);
      const pages = () => Math.max(1, Math.ceil(rows.length / pageSize));
      function show() {
        rows.forEach((row, i) => {
          row.hidden = Math.floor(i / pageSize) !== page;
        });
        nav.querySelector(".pages").textContent = `Page ${page + 1} of ${pages()}`;
        nav.querySelector(".prev").disabled = page === 0;
        nav.querySelector(".next").disabled = page >= pages() - 1;
      }
      nav.querySelector(".prev").addEventListener("click", () => { page -= 1; show(); });
      nav.querySelector(".next").addEventListener("click", () => { page += 1; show(); });
      table.querySelectorAll("th button.sort").forEach((button, column) => {
        let ascending = true;
        button.addEventListener("click", () => {
          const value = (row) => row.cells[column] ? row.cells[column].textContent : "";
          const numeric = rows.every((row) => value(row) === "" || !isNaN(Number(value(row))));
          rows.sort((a, b) => {
            const [x, y] = [value(a), value(b)];
            const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
            return ascending ? order : -order;
          });
          rows.forEach((row) => body.appendChild(row));
          table.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
          button.parentElement.setAttribute("aria-sort", ascending ? "ascending" : "descending");
          ascending = !ascending;
          page = 0;
          show();
        });
      });
      show();
    });
  }

  if (!main) return;
  setupTables(main);
  if (main.dataset.finished === "1") return;

  const url = main.dataset.statusUrl;
  const log = document.getElementById("log");
  let offset = 0;
  let follow = true; // stop scrolling along once the reader scrolls up
  log.addEventListener("scroll", () => {
    follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });

  function render(status) {
    const bar = document.getElementById("progress-bar");
    const percent = Math.round(status.progress);
    bar.style.width = `${status.progress}%`;
    bar.textContent = `${percent}%`;
    document.getElementById("progress").setAttribute("aria-valuenow", percent);
    document.getElementById("progress-message").textContent =
      status.message || (status.state === "queued" ? "Waiting for a worker" : "");
    document.getElementById("elapsed").textContent =
      status.state === "running" ? `running for ${status.elapsed}` : "";
    document.getElementById("queue-position").textContent =
      status.position ? `position ${status.position} in the queue` : "";
    document.getElementById("waiting-for").textContent = status.waiting_for || "";
    const badge = document.querySelector("#analysis-state .badge");
    badge.textContent = status.state.charAt(0).toUpperCase() + status.state.slice(1);
    const started = document.getElementById("timeline-started");
    if (started && status.started) {
      started.textContent = status.started;
      started.hidden = false;
    }
  }

  async function swapInResults() {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("analysis-main");
    if (!fresh) return;
    main.replaceWith(fresh);
    setupTables(fresh);
    // "Analysis #N is queued" is no longer news.
    document.querySelectorAll("[data-until-finished]").forEach((note) => note.remove());
  }

  async function poll() {
    let delay = 1000;
    try {
      const response = await fetch(`${url}?offset=${offset}`, {
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const status = await response.json();
        if (status.log) {
          log.append(document.createTextNode(status.log));
          if (follow) log.scrollTop = log.scrollHeight;
          if (status.offset - offset >= 65536) delay = 0; // more is waiting
        }
        offset = status.offset;
        render(status);
        if (status.finished && delay) {
          await swapInResults();
          return; // the run is over: no more polling
        }
      }
    } catch (error) {
      delay = 3000; // the server is restarting or the network hiccuped: try again
    }
    window.setTimeout(poll, delay);
  }
  poll();
})();
