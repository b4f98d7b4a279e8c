"""Sending user files and results: headers that keep them inert, streamed zips."""

from pathlib import Path
from urllib.parse import quote

from flask import send_file
from werkzeug import Response
from zipstream import ZipStream

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


def send_user_file(
    path: Path, name: str, inline_types: dict[str, str], inline: bool
) -> Response:
    """Send a user's file under ``name``: inline only when asked and its type is in
    ``inline_types``, as an attachment otherwise; always under FILE_CSP."""
    mimetype = inline_types.get(suffix_of(name)) if inline else None
    response = send_file(
        path,
        mimetype=mimetype,
        as_attachment=mimetype is None,
        download_name=name,
        max_age=0,
    )
    response.headers["Content-Security-Policy"] = FILE_CSP
    return response


def attachment_header(name: str) -> str:
    """Content-Disposition for a download keeping a Unicode name (RFC 6266)."""
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def zip_response(stream: ZipStream, name: str) -> Response:
    """Send ``stream`` as ``name``, built while it is sent; its size is known ahead
    (stored entries), so browsers show a progress bar."""
    response = Response(stream, mimetype="application/zip")
    response.headers["Content-Length"] = str(len(stream))
    response.headers["Content-Disposition"] = attachment_header(name)
    return response
