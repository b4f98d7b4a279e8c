"""A pipeline's README as safe HTML: Markdown rendered by Python-Markdown, then
cleaned by nh3 (the ammonia sanitiser), so a README can never run script in the
portal's pages."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import markdown
import nh3
from markupsafe import Markup

MAX_README_BYTES = 256 * 1024
ALLOWED_TAGS = {
    *"a abbr b blockquote br code dd del dl dt em h1 h2 h3 h4 h5 h6 hr i li ol p pre "
    "s strong sub sup table tbody td th thead tr ul".split()
}


def render_readme(folder: Path) -> Markup | None:
    """``folder``/README.md as sanitised HTML, or None when there is none (read
    again only when the file changes)."""
    path = folder / "README.md"
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size > MAX_README_BYTES:
        too_large = Markup("<p>The README is too large to show here ({} KiB).</p>")
        return too_large.format(stat.st_size // 1024)
    return _render(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _render(path: str, _mtime_ns: int, _size: int) -> Markup:
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    # Its headings start at h3: the page has its own h1 and the README's section h2.
    html = markdown.markdown(
        text,
        extensions=["tables", "fenced_code", "sane_lists", "toc"],
        extension_configs={"toc": {"baselevel": 3}},
    )
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}, "abbr": {"title"}, "th": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 (sanitised by nh3 just above)
