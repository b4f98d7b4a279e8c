"""Sending user files and results: headers that keep them inert, streamed zips."""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from flask import current_app, request
from werkzeug import Response
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from zipstream import ZipStream

from backend import safe_open

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Files are served with a policy that forbids scripts, plugins and framing, so even
# a file a browser renders (an SVG, an HTML report) cannot act.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


# Raster images, which browsers can show without running anything.
INLINE_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def suffix_of(name: str) -> str:
    """ ".png" for "plot.PNG"; "" when there is no dot."""
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


class FileBody:
    """The bytes of an open file as a response body: exactly ``size`` of them
    (its size when it was opened and checked), so a file that grows or shrinks
    while it is sent cannot make the response disagree with its Content-Length.
    Seekable, for range requests."""

    BLOCK = 256 * 1024

    def __init__(self, handle: BinaryIO, size: int):
        self.handle, self.size, self.position = handle, size, 0
        handle.seek(0)

    def __iter__(self) -> FileBody:
        return self

    def __next__(self) -> bytes:
        left = self.size - self.position
        if left <= 0:
            raise StopIteration
        data = self.handle.read(min(self.BLOCK, left))
        if not data:  # cut short since it was opened: the client sees it end early
            raise StopIteration
        self.position += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def seek(self, position: int) -> None:
        self.position = min(max(position, 0), self.size)
        self.handle.seek(self.position)

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.handle.close()


def download_name(name: str) -> str:
    """``name`` as it can travel in a header: control characters (a newline a run
    put in a file name) become ``_``."""
    return _CONTROL.sub("_", name) or "file"


def send_user_file(
    handle: BinaryIO, name: str, inline_types: dict[str, str], inline: bool
) -> Response:
    """Send the open file ``handle`` (the very one that was checked: never a path
    opened again) under ``name``: inline only when asked and its type is in
    ``inline_types``, as an attachment otherwise; always under FILE_CSP. Range
    and conditional requests are answered."""
    info = os.fstat(handle.fileno())
    name = download_name(name)
    inline_type = inline_types.get(suffix_of(name)) if inline else None
    mimetype = inline_type or mimetypes.guess_type(name)[0]
    response = current_app.response_class(
        FileBody(handle, info.st_size),
        mimetype=mimetype or "application/octet-stream",
        direct_passthrough=True,
    )
    response.content_length = info.st_size
    response.last_modified = info.st_mtime
    response.set_etag(f"{info.st_ino:x}-{info.st_mtime_ns:x}-{info.st_size:x}")
    response.cache_control.no_cache = True
    response.cache_control.max_age = 0
    response.headers["Content-Disposition"] = (
        inline_header(name) if inline_type else attachment_header(name)
    )
    response.headers["Content-Security-Policy"] = FILE_CSP
    try:
        return response.make_conditional(
            request.environ, accept_ranges=True, complete_length=info.st_size
        )
    except RequestedRangeNotSatisfiable:
        handle.close()
        raise


def add_open_files(
    stream: ZipStream, root: Path, entries: list[tuple[str, int]], prefix: str = ""
) -> None:
    """Queue ``entries`` (path beneath ``root``, size as listed) into ``stream``
    under ``prefix``; each is opened through ``safe_open`` only when the zip
    reaches it, and gives exactly its listed size (see ``_exactly``)."""
    for path, size in entries:
        stream.add(_exactly(root, path, size), prefix + path, size=size)


def _exactly(root: Path, path: str, size: int):
    """``size`` bytes of the file ``path`` beneath ``root``, for a zip whose sizes
    were announced: a file that has changed since it was listed (only a run still
    writing, or a hostile one, does that) is cut at its size or filled up with
    zero bytes, and one that can no longer be opened safely gives zeros; the zip
    stays whole either way, and the log says so."""
    left = size
    try:
        handle = safe_open.open_file(root, path)
    except OSError:
        log.warning("%s changed while a zip was made of it: sent as zeros", path)
        handle = None
    if handle is not None:
        with handle:
            while left > 0 and (data := handle.read(min(FileBody.BLOCK, left))):
                left -= len(data)
                yield data
        if left:
            log.warning("%s shrank while a zip was made of it: filled up", path)
    while left > 0:
        block = min(FileBody.BLOCK, left)
        left -= block
        yield bytes(block)


def attachment_header(name: str, disposition: str = "attachment") -> str:
    """Content-Disposition for a download keeping a Unicode name (RFC 6266)."""
    name = download_name(name)
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def inline_header(name: str) -> str:
    return attachment_header(name, "inline")


def zip_response(stream: ZipStream, name: str) -> Response:
    """Send ``stream`` as ``name``, built while it is sent; its size is known ahead
    (stored entries), so browsers show a progress bar."""
    response = Response(stream, mimetype="application/zip")
    response.headers["Content-Length"] = str(len(stream))
    response.headers["Content-Disposition"] = attachment_header(name)
    return response
