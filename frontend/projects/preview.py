"""What a file looks like in the browser: text, a table, JSON, or an image.

Only raster images are ever sent inline; everything else is read here and shown as
escaped text, so HTML, SVG or XML in a project can never run as active content.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..core.downloads import INLINE_IMAGES

TABLES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


@dataclass
class Preview:
    kind: str  # image, table, json, text, none
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    truncated: bool = False
    reason: str = ""


def _head(handle: BinaryIO, limit: int) -> tuple[bytes, bool]:
    data = handle.read(limit + 1)
    return data[:limit], len(data) > limit


def _decode(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut in the middle of a character at the end is fine.
        if exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")
        return None


def make_preview(handle: BinaryIO, name: str, max_bytes: int, max_rows: int) -> Preview:
    """How the open file ``handle``, called ``name``, is shown: at most
    ``max_bytes`` of it are read, at most ``max_rows`` rows of a table kept."""
    suffix = Path(name).suffix.lower()
    if suffix in INLINE_IMAGES:
        return Preview("image")
    data, truncated = _head(handle, max_bytes)
    text = _decode(data)
    if text is None:
        return Preview("none", reason="This looks like a binary file.")
    if suffix in TABLES:
        reader = csv.reader(io.StringIO(text), delimiter=TABLES[suffix])
        rows = []
        for row in reader:
            rows.append(row)
            if len(rows) > max_rows:
                break
        more = truncated or len(rows) > max_rows
        return Preview("table", rows=rows[: max_rows + 1], truncated=more)
    if suffix == ".json" and not truncated:
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            return Preview("json", text=pretty)
        except ValueError:
            pass
    return Preview("text", text=text, truncated=truncated)
