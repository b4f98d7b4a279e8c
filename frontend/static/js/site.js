// On every page. The site's Content-Security-Policy admits no inline style, so a
// progress bar drawn by the server says its width in data-width (a percentage)
// and gets it here.
for (const bar of document.querySelectorAll(".progress-bar[data-width]")) {
  bar.style.width = `${Number(bar.dataset.width)}%`;
}

// "Select all": a checkbox with data-select-all="<selector>" ticks or clears the
// checkboxes it names (listened for on the document: parts of pages are swapped
// in after they load), and shows "some" while only some are ticked.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches("[data-select-all]")) {
    for (const box of document.querySelectorAll(target.dataset.selectAll)) {
      box.checked = target.checked;
    }
    return;
  }
  for (const all of document.querySelectorAll("[data-select-all]")) {
    if (!target.matches(all.dataset.selectAll)) continue;
    const boxes = Array.from(document.querySelectorAll(all.dataset.selectAll));
    const ticked = boxes.filter((box) => box.checked).length;
    all.checked = ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
});

// The same for a <select multiple>: a checkbox with data-select-options="#id"
// selects or clears all its options, and follows what is picked by hand.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches("[data-select-options]")) {
    const select = document.querySelector(target.dataset.selectOptions);
    if (!select) return;
    for (const option of select.options) option.selected = target.checked;
    select.dispatchEvent(new Event("change", { bubbles: true }));
    return;
  }
  if (target.matches("select[multiple]")) {
    const all = document.querySelector(`[data-select-options="#${target.id}"]`);
    if (!all) return;
    const picked = Array.from(target.options).filter((o) => o.selected).length;
    all.checked = picked === target.options.length;
    all.indeterminate = picked > 0 && picked < target.options.length;
  }
});
