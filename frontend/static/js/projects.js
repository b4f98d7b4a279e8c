// Project pages: confirmations, inline rename, and the uploader.
// The uploader sends a small file as the raw body of its own request, so the server
// can stream it to disk, and a larger one in pieces over tus (tus-js-client, at
// /uploads): a dropped connection is retried from the last byte the server has, and
// choosing the same file again after a closed tab or a reload goes on from there.
// Per-file and overall progress, with a cancel button.
(function () {
  "use strict";

  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  // Delegated, so that rows replaced after an upload keep working.
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const toggle = event.target.closest(".rename-toggle");
    if (!toggle) return;
    const form = toggle.closest("tr").querySelector(".rename-form");
    form.hidden = !form.hidden;
    if (!form.hidden) form.querySelector("input[name=name]").select();
  });

  const root = document.getElementById("uploader");
  if (!root) return;

  const panel = document.getElementById("upload-panel");
  const list = document.getElementById("upload-list");
  const overallBar = document.getElementById("overall-bar");
  const overallText = document.getElementById("overall-text");
  const cancelButton = document.getElementById("cancel-upload");
  const maxBytes = Number(root.dataset.maxBytes) || Infinity;
  const chunkBytes = Number(root.dataset.chunkBytes) || 8 * 1024 * 1024;
  let busy = false;
  let cancelled = false;
  let current = null;

  function humanSize(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (bytes >= 1024 && i < units.length - 1) {
      bytes /= 1024;
      i += 1;
    }
    return i === 0 ? `${bytes} B` : `${bytes.toFixed(1)} ${units[i]}`;
  }

  function filesFromInput(input) {
    return Array.from(input.files).map((file) => ({
      file,
      path: file.webkitRelativePath || file.name,
    }));
  }

  // Walk dropped folders (File and Directory Entries API).
  async function filesFromDrop(dataTransfer) {
    const entries = Array.from(dataTransfer.items)
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
      .filter(Boolean);
    if (!entries.length) {
      return Array.from(dataTransfer.files).map((file) => ({ file, path: file.name }));
    }
    const found = [];
    async function walk(entry, prefix) {
      if (entry.isFile) {
        const file = await new Promise((ok, fail) => entry.file(ok, fail));
        found.push({ file, path: prefix + file.name });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        let batch;
        do {
          batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
          for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
        } while (batch.length);
      }
    }
    for (const entry of entries) await walk(entry, "");
    return found;
  }

  async function existingNames(items, extract) {
    const response = await fetch(root.dataset.checkUrl, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken,
      },
      body: JSON.stringify({
        folder: root.dataset.folder,
        paths: items.map((item) => item.path),
        extract,
      }),
    });
    if (!response.ok) throw new Error(`could not check names (${response.status})`);
    return new Set((await response.json()).existing);
  }

  function askAboutClashes(names) {
    const modalElement = document.getElementById("clash-modal");
    const listElement = document.getElementById("clash-names");
    listElement.replaceChildren(
      ...names.map((name) => {
        const li = document.createElement("li");
        li.textContent = name;
        return li;
      })
    );
    const modal = bootstrap.Modal.getOrCreateInstance(modalElement);
    return new Promise((resolve) => {
      let choice = null;
      const onClick = (event) => {
        const button = event.target.closest("[data-clash]");
        if (!button) return;
        choice = button.dataset.clash;
        modal.hide();
      };
      modalElement.addEventListener("click", onClick);
      modalElement.addEventListener(
        "hidden.bs.modal",
        () => {
          modalElement.removeEventListener("click", onClick);
          resolve(choice || "skip");
        },
        { once: true }
      );
      modal.show();
    });
  }

  function row(item) {
    const li = document.createElement("li");
    li.className = "list-group-item";
    li.innerHTML =
      '<div class="d-flex justify-content-between gap-2">' +
      '<span class="text-break name"></span><span class="text-nowrap state">Waiting</span></div>' +
      '<div class="progress progress-thin mt-1" role="progressbar">' +
      '<div class="progress-bar w-0"></div></div>';
    li.querySelector(".name").textContent = `${item.path} (${humanSize(item.file.size)})`;
    li.querySelector(".progress").setAttribute("aria-label", `Upload of ${item.path}`);
    list.appendChild(li);
    return li;
  }

  function setState(li, text, kind) {
    const state = li.querySelector(".state");
    state.textContent = text;
    state.className = `text-nowrap state ${kind ? `text-${kind}` : ""}`;
    if (kind === "success") li.querySelector(".progress-bar").style.width = "100%";
  }

  function send(item, li, policy, extract, onProgress) {
    return new Promise((resolve) => {
      const params = new URLSearchParams({
        path: item.path,
        on_clash: policy,
        extract: extract ? "1" : "0",
      });
      if (root.dataset.folder) params.set("folder", root.dataset.folder);
      const xhr = new XMLHttpRequest();
      current = xhr;
      xhr.open("POST", `${root.dataset.uploadUrl}?${params}`);
      xhr.setRequestHeader("X-CSRFToken", csrfToken);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (event) => {
        const done = event.lengthComputable ? event.loaded / event.total : 0;
        li.querySelector(".progress-bar").style.width = `${(100 * done).toFixed(1)}%`;
        setState(li, done >= 1 ? "Processing…" : `${Math.floor(100 * done)}%`);
        onProgress(event.loaded);
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch (error) {
          body = { message: `The server answered ${xhr.status}.` };
        }
        if (xhr.status === 200 && body.ok) {
          setState(li, `✓ ${body.message}`, body.status === "skipped" ? "secondary" : "success");
        } else {
          setState(li, `✗ ${body.message || `Failed (${xhr.status}).`}`, "danger");
        }
        resolve();
      };
      xhr.onerror = () => {
        setState(li, "✗ The connection failed; nothing was stored.", "danger");
        resolve();
      };
      xhr.onabort = () => {
        setState(li, "Cancelled; nothing was stored.", "secondary");
        resolve();
      };
      xhr.send(item.file);
    });
  }

  function projectPath(item) {
    const folder = root.dataset.folderPath;
    return folder ? `${folder}/${item.path}` : item.path;
  }

  function refusal(error) {
    const response = error.originalResponse;
    if (!response) return "The connection failed; what arrived is kept for a retry.";
    try {
      return JSON.parse(response.getBody()).message || `Failed (${response.getStatus()}).`;
    } catch (parseError) {
      return `The server answered ${response.getStatus()}.`;
    }
  }

  // Over tus: pieces of chunkBytes, retried on a dropped connection or a server
  // error (a refusal, 4xx, is final), resumed from an earlier attempt at this file.
  function sendResumable(item, li, policy, extract, onProgress) {
    const path = projectPath(item);
    return new Promise((resolve) => {
      let outcome = null;
      let resumedAt = null;
      const upload = new tus.Upload(item.file, {
        endpoint: root.dataset.tusUrl,
        chunkSize: chunkBytes,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000],
        removeFingerprintOnSuccess: true,
        metadata: {
          project: root.dataset.projectId,
          path,
          on_clash: policy,
          extract: extract ? "1" : "0",
          filename: item.file.name,
        },
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
        fingerprint: (file) =>
          Promise.resolve(
            ["labqueue", root.dataset.projectId, path, file.size, file.lastModified].join("|")
          ),
        onShouldRetry: (error) => {
          const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
          return status === 0 || status === 409 || status === 423 || status >= 500;
        },
        onProgress: (sent, total) => {
          if (resumedAt === null) resumedAt = sent;
          const done = total ? sent / total : 0;
          li.querySelector(".progress-bar").style.width = `${(100 * done).toFixed(1)}%`;
          const note = resumedAt > 0 ? `resumed at ${humanSize(resumedAt)}, ` : "";
          setState(li, done >= 1 ? "Processing…" : `${note}${Math.floor(100 * done)}%`);
          onProgress(sent);
        },
        onAfterResponse: (request, response) => {
          const status = response.getHeader("Labqueue-Upload-Status");
          if (status) {
            const message = decodeURIComponent(response.getHeader("Labqueue-Upload-Message") || "");
            outcome = { status, message };
          }
        },
        onSuccess: () => {
          if (outcome) {
            setState(li, `✓ ${outcome.message}`, outcome.status === "skipped" ? "secondary" : "success");
          } else {
            setState(li, "✓ Uploaded.", "success");
          }
          resolve();
        },
        onError: (error) => {
          setState(li, `✗ ${refusal(error)}`, "danger");
          resolve();
        },
      });
      current = {
        abort: () => {
          // Terminate: the server removes what it received.
          upload.abort(true).finally(() => {
            setState(li, "Cancelled; nothing was stored.", "secondary");
            resolve();
          });
        },
      };
      upload.findPreviousUploads().then((previous) => {
        if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
        else resumedAt = 0;
        upload.start();
      });
    });
  }

  async function refreshListing() {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["listing", "project-totals"]) {
      const fresh = page.getElementById(id);
      if (fresh) document.getElementById(id).replaceWith(fresh);
    }
  }

  async function start(items) {
    if (!items.length || busy) return;
    busy = true;
    cancelled = false;
    panel.hidden = false;
    list.replaceChildren();
    cancelButton.disabled = false;
    const extract = document.getElementById("extract").checked;
    let policy = document.getElementById("on-clash").value;
    const rows = items.map(row);
    let clashes = new Set();
    try {
      if (policy === "ask") clashes = await existingNames(items, extract);
    } catch (error) {
      overallText.textContent = error.message;
    }
    let clashPolicy = policy;
    if (policy === "ask" && clashes.size) clashPolicy = await askAboutClashes([...clashes]);
    const total = items.reduce((sum, item) => sum + item.file.size, 0) || 1;
    let finished = 0;
    for (let i = 0; i < items.length; i += 1) {
      const item = items[i];
      const li = rows[i];
      if (cancelled) {
        setState(li, "Cancelled; nothing was stored.", "secondary");
        continue;
      }
      if (item.file.size > maxBytes) {
        setState(li, `✗ Larger than the ${humanSize(maxBytes)} limit; not sent.`, "danger");
        finished += item.file.size;
        continue;
      }
      const itemPolicy = clashes.has(item.path) ? clashPolicy : policy;
      const sender = item.file.size > chunkBytes && window.tus ? sendResumable : send;
      await sender(item, li, itemPolicy, extract, (loaded) => {
        const fraction = (finished + loaded) / total;
        overallBar.style.width = `${(100 * fraction).toFixed(1)}%`;
        overallText.textContent = `${humanSize(finished + loaded)} of ${humanSize(total)}`;
      });
      finished += item.file.size;
    }
    current = null;
    overallBar.style.width = "100%";
    const failed = list.querySelectorAll(".text-danger").length;
    overallText.textContent = cancelled
      ? "Upload cancelled."
      : `Done: ${items.length - failed} of ${items.length} file(s) handled.`;
    cancelButton.disabled = true;
    busy = false;
    await refreshListing();
  }

  cancelButton.addEventListener("click", () => {
    cancelled = true;
    if (current) current.abort();
  });
  for (const id of ["pick-files", "pick-folder"]) {
    const input = document.getElementById(id);
    input.addEventListener("change", () => {
      start(filesFromInput(input));
      input.value = "";
    });
  }
  const dropzone = document.getElementById("dropzone");
  dropzone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("border-primary");
  });
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("border-primary"));
  dropzone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropzone.classList.remove("border-primary");
    start(await filesFromDrop(event.dataTransfer));
  });
})();
