"""How the API knows who calls: a personal token, and nothing else.

- Flask-Login's request loader (Flask-Security's, which we wrap) reads
  ``Authorization: Bearer <token>`` on the API's paths, or HTTP Basic with the
  token as the password (some TES clients can send only that).
- The API's paths read no cookie at all, and set none: a browser's session can
  never act through the API, so the API needs no CSRF token (``CookieFreeApi``
  and ``ApiSessionInterface``).
- ``token_required`` guards every API view: 401 without a usable token, 403 for
  a read-only token on a write, 429 past API_WRITES_PER_MINUTE.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from functools import wraps

from flask import Flask, Request, current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from werkzeug.exceptions import Forbidden, TooManyRequests, Unauthorized

from ..core import limits
from ..core.http import is_api_path
from .tokens import authenticate


class CookieFreeApi:
    """WSGI middleware: requests to the API arrive without their cookies."""

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable):
        if is_api_path(environ.get("PATH_INFO", "")):
            environ.pop("HTTP_COOKIE", None)
        return self.wsgi_app(environ, start_response)


class ApiSessionInterface(SecureCookieSessionInterface):
    """The usual signed-cookie session, never saved on the API's paths."""

    def save_session(self, app, session, response) -> None:
        if is_api_path(request.path):
            return
        super().save_session(app, session, response)


def secret_in(request: Request) -> str | None:
    """The token a request carries: a Bearer token, or Basic's password."""
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    if kind.lower() == "bearer":
        return value.strip() or None
    if kind.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def wrap_request_loader(app: Flask) -> None:
    """Put the token check in front of Flask-Security's own request loader."""
    manager = app.login_manager
    theirs = manager._request_callback

    def load_user(request: Request):
        if not is_api_path(request.path):
            return theirs(request) if theirs else None
        secret = secret_in(request)
        if secret is None:
            return None
        token = authenticate(secret, request.remote_addr)
        if token is None:
            g.api_token_refused = True
            return None
        g.api_token = token
        return token.user

    manager.request_loader(load_user)


def _unauthorized() -> Unauthorized:
    if g.get("api_token_refused"):
        message = "This token is not valid: it was revoked, has expired or is wrong."
    else:
        message = (
            "Send a personal token: 'Authorization: Bearer <token>' (make one on "
            "your profile page)."
        )
    return Unauthorized(message)


def token_required(write: bool = False, counted: bool = True) -> Callable:
    """Only with a usable token; ``write``: not a read-only one, and counted
    against API_WRITES_PER_MINUTE unless not ``counted`` (an upload's pieces)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_authenticated or g.get("api_token") is None:
                raise _unauthorized()
            token = g.api_token
            if write:
                if token.read_only:
                    raise Forbidden(
                        "This token is read-only: make a read and write token to "
                        "change anything."
                    )
                if counted:
                    _count_write(token.id)
            return view(*args, **kwargs)

        return guarded

    return decorate


def _count_write(token_id: int) -> None:
    """At most API_WRITES_PER_MINUTE writes per token in each minute."""
    allowed = current_app.config["API_WRITES_PER_MINUTE"]
    attempts, wait = limits.count_in_window(f"api-write:{token_id}", 60)
    if attempts > allowed:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"This token made more than {allowed} changes in a minute. Wait "
            f"{seconds} seconds and try again.",
            retry_after=seconds,
        )


def init_auth(app: Flask) -> None:
    app.session_interface = ApiSessionInterface()
    app.wsgi_app = CookieFreeApi(app.wsgi_app)  # type: ignore[method-assign]
    wrap_request_loader(app)
