"""The upload and download benchmarks' baselines: bare WSGI apps that only write
the body to disk, or only send a file."""

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


def send(environ, start_response):
    """The download benchmark's baseline: the file named by BARE_SEND_FILE, handed
    to the server's file wrapper (gunicorn sends it with sendfile)."""
    if environ.get("PATH_INFO") != "/file":  # gunicorn's start check
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    path = os.environ["BARE_SEND_FILE"]
    handle = open(path, "rb")  # noqa: SIM115 (the server closes the wrapper)
    size = os.fstat(handle.fileno()).st_size
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
    )
    return environ["wsgi.file_wrapper"](handle, 1024 * 1024)
