// A short guided tour on the first visit of the dashboard, a project and a run form
// (driver.js, served from static/vendor). "Replay the tour" in the Help menu starts
// it again.
(function () {
  "use strict";

  const page = document.body.dataset.tour;
  if (!page || !window.driver) return;

  const TOURS = {
    dashboard: [
      { element: "#tour-new-project", popover: { title: "Start with a project",
        description: "A project holds the data you want to analyse: one per experiment or data set." } },
      { element: "#storage-use", popover: { title: "Your storage",
        description: "How much of your quota your files use. Deleting a project frees its space." } },
      { element: "#nav-analyses", popover: { title: "Your analyses",
        description: "Runs waiting, running and finished, across all your projects." } },
    ],
    project: [
      { element: "#dropzone", popover: { title: "Upload your data",
        description: "Drop files or whole folders here. Large files show their progress and can be cancelled." } },
      { element: "#extract", popover: { title: "Archives",
        description: "Tick this to unpack .zip and .tar.gz files into a folder as they arrive." } },
      { element: "#listing", popover: { title: "Your files",
        description: "Click a file to preview it; rename, download or delete with the links on its row." } },
      { element: "#tour-run", popover: { title: "Run a pipeline",
        description: "When your data is here, choose a pipeline and fill in its form." } },
    ],
    run: [
      { element: "#run-form", popover: { title: "The run form",
        description: "Each field explains itself below it. File lists show only the files this pipeline can read." } },
      { element: "#run-form [type=submit]", popover: { title: "Start",
        description: "The analysis joins the queue at once; you can follow it live and we email you when it ends." } },
    ],
  };

  function start() {
    const steps = (TOURS[page] || []).filter((step) => document.querySelector(step.element));
    if (!steps.length) return;
    window.driver.js.driver({ showProgress: true, steps }).drive();
  }

  document.querySelectorAll("[data-replay-tour]").forEach((link) => {
    link.hidden = false;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      start();
    });
  });
  const key = `labqueue-tour-${page}`;
  if (!window.localStorage.getItem(key)) {
    window.localStorage.setItem(key, "seen");
    start();
  }
})();
