"""Sending user files and results: headers that keep them inert, streamed zips."""

from urllib.parse import quote

from werkzeug import Response
from zipstream import ZipStream

# Files are served with a policy that forbids scripts, plugins and framing, so even
# a file a browser renders (an SVG, an HTML report) cannot act.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


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
