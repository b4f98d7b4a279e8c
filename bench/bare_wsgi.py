"""The upload benchmark's baseline: a WSGI app that only writes the body to disk."""

import os
import tempfile

CHUNK = 1024 * 1024
TARGET_DIR = os.environ.get("BARE_WSGI_DIR", tempfile.gettempdir())


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    fd, path = tempfile.mkstemp(dir=TARGET_DIR)
    with os.fdopen(fd, "wb") as out:
        left = length
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
    os.unlink(path)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
