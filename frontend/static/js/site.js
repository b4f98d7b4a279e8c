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
