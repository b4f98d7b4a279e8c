"""Request bodies: small everywhere, large only where files are streamed; measured on
a real gunicorn process for the memory an anonymous client can make it use."""

from __future__ import annotations

import socket

import requests

from tests.conftest import Auth, base_config, upload
from tests.workers import Gunicorn

MiB = 1024**2


def test_a_large_form_post_is_refused_with_the_limit(client):
    response = client.post("/login", data={"email": "x" * (3 * MiB)})
    assert response.status_code == 413
    assert "The limit is 2.0 MiB per request" in response.text


def test_uploads_may_be_larger_than_forms(client, app, make_user, make_project):
    owner = make_user()
    project = make_project(owner)
    Auth(client).login()
    response = upload(client, project, "big.bin", b"x" * (3 * MiB))
    assert response.status_code == 200, response.json
    app.config["MAX_UPLOAD_BYTES"] = 2 * MiB
    refused = upload(client, project, "bigger.bin", b"x" * (3 * MiB))
    assert refused.status_code == 413
    assert "The limit is 2.0 MiB per request" in refused.json["message"]


def post_raw(port: int, path: str, length: int) -> bytes:
    """POST ``length`` bytes of a form as fast as the server takes them; returns the
    response, which may come before the body was sent."""
    chunk = b"a" * MiB
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
            + b"email="
        )
        sent = 6
        try:
            while sent < length:
                sock.sendall(chunk[: min(MiB, length - sent)])
                sent += MiB
        except OSError:
            pass  # the server answered and closed: what we want
        sock.settimeout(10)
        answer = b""
        try:
            while block := sock.recv(65536):
                answer += block
        except OSError:
            pass
    return answer


def test_an_anonymous_300_mib_form_does_not_grow_the_server(tmp_path, smtp, app):
    server = Gunicorn(base_config(tmp_path, smtp))
    try:
        # Warm up: the first requests load templates and open the database.
        for _ in range(3):
            post_raw(server.port, "/login", 1000)
            requests.get(f"http://127.0.0.1:{server.port}/login", timeout=10)
        before = server.peak_rss()
        answer = post_raw(server.port, "/login", 300 * MiB)
        grown = server.peak_rss() - before
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert grown < 20 * MiB, f"the worker grew by {grown / MiB:.0f} MiB"
