"""How requests reach the app: only for the site's own host names, and with small
bodies except where files are streamed.

``SiteOnly`` refuses requests addressed to any other host (400) and presents the
rest to the app as addressed to ``SITE_URL``, so every absolute link the app builds,
the ones Flask-Security puts in confirmation and reset mail included, starts with
the configured site URL whatever Host header a client sent.

``LabqueueRequest`` caps bodies at ``MAX_CONTENT_LENGTH`` (small: forms and JSON are
read into memory) unless the view is marked with ``@streams_upload``, which allows
``MAX_UPLOAD_BYTES`` (the view reads the body as a stream and never holds it).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, current_app
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import PathConverter
from werkzeug.sansio.utils import host_is_trusted

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
# Where the API and the TES endpoint live: token-authenticated, JSON, no cookies.
API_PREFIXES = ("/api/", "/ga4gh/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_hosts(config: dict) -> list[str]:
    """The host names the site answers to: TRUSTED_HOSTS when set, else SITE_URL's
    host, with every loopback name when that host is a loopback one (a developer's
    machine, where localhost and 127.0.0.1 are the same)."""
    site_host = urlsplit(config["SITE_URL"]).hostname or "localhost"
    if config.get("TRUSTED_HOSTS"):
        return [*config["TRUSTED_HOSTS"], site_host]
    if _is_loopback(site_host):
        return [site_host, *LOOPBACK_NAMES]
    return [site_host]


class SiteOnly:
    """WSGI middleware: 400 for other hosts; the rest seen as SITE_URL's."""

    def __init__(self, app: Flask):
        self.app = app
        self.wsgi_app = app.wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        config = self.app.config  # read per request: tests change SITE_URL
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if not host_is_trusted(host, trusted_hosts(config)):
            refusal = BadRequest(f"This server does not answer for {host!r}.")
            return refusal(environ, start_response)
        site = urlsplit(config["SITE_URL"])
        scheme = site.scheme or "http"
        port = site.port or (443 if scheme == "https" else 80)
        environ["HTTP_HOST"] = site.netloc
        environ["SERVER_NAME"] = site.hostname
        environ["SERVER_PORT"] = str(port)
        environ["wsgi.url_scheme"] = scheme
        # Nothing here trusts a proxy's forwarded host; make sure nothing later does.
        environ.pop("HTTP_X_FORWARDED_HOST", None)
        return self.wsgi_app(environ, start_response)


def streams_upload(view: Callable) -> Callable:
    """Mark ``view`` as reading its body as a stream: it may be MAX_UPLOAD_BYTES."""
    view.streams_upload = True  # type: ignore[attr-defined]
    return view


class LabqueueRequest(Request):
    @property
    def max_content_length(self) -> int | None:
        """MAX_UPLOAD_BYTES for views marked ``@streams_upload``, else the small
        MAX_CONTENT_LENGTH; known from the URL rule before any byte is read."""
        if self._max_content_length is not None:
            return self._max_content_length
        if not current_app:
            return super().max_content_length
        view = current_app.view_functions.get(self.endpoint or "")
        if getattr(view, "streams_upload", False):
            return current_app.config["MAX_UPLOAD_BYTES"]
        return current_app.config["MAX_CONTENT_LENGTH"]

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


class AnyPathConverter(PathConverter):
    """``<path:...>`` that also matches names with a newline (a run may name an
    output so; the listing shows it, so its address must reach it)."""

    regex = "[^/](?s:.*?)"


def init_http(app: Flask) -> None:
    app.request_class = LabqueueRequest
    # Before any blueprint: rules take their converters when they are added.
    app.url_map.converters["path"] = AnyPathConverter
    app.wsgi_app = SiteOnly(app)  # type: ignore[method-assign]
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        # The client's address, as the proxies in front say it: rate limits and the
        # audit log see people, not the proxy. The scheme and host come from
        # SITE_URL (SiteOnly), so only X-Forwarded-For is read.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=0, x_host=0, x_port=0, x_prefix=0
        )
