// On every page. The site's Content-Security-Policy admits no inline style, so a
// progress bar drawn by the server says its width in data-width (a percentage)
// and gets it here.
for (const bar of document.querySelectorAll(".progress-bar[data-width]")) {
  bar.style.width = `${Number(bar.dataset.width)}%`;
}
