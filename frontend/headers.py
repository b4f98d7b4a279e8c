"""Security headers on every response.

- ``Content-Security-Policy``: a page runs only the site's own script files and
  style sheets (no inline script, no inline style), talks only to the site, and
  may not be framed by any other page (``frame-ancestors 'none'``);
- ``X-Frame-Options``, ``Referrer-Policy``, ``Permissions-Policy`` and
  ``Cross-Origin-Opener-Policy`` for browsers that read those;
- ``Strict-Transport-Security`` when the site is served over https.

Flask-Admin's pages keep a few inline event handlers of its own (the delete
confirmation, the actions menu). They get a policy of their own that admits exactly
those handlers, by the hashes of their text (``'unsafe-hashes'``), and nothing else
inline. A response that sets its own policy (user files: FILE_CSP) keeps it.
"""

from __future__ import annotations

import base64
import hashlib

from flask import Flask, Response, request

SITE_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    # Bootstrap draws its small icons (select arrows, close buttons) as data: URLs.
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)
HSTS = "max-age=31536000; includeSubDomains"


def policy_text(policy: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def handler_hash(source: str) -> str:
    """The CSP source expression that admits an inline handler whose text (as the
    browser reads it, entities decoded) is ``source``."""
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def admin_handlers(admin) -> list[str]:
    """The text of every inline handler (and javascript: link) Flask-Admin's
    bootstrap4 pages write for ``admin``'s views: the row delete confirmation, the
    filter menu, and one per action of each view ("With selected")."""
    handlers = {
        "return faHelpers.safeConfirm('Are you sure you want to delete this record?');",
        "return false;",
        # Its menu links lead nowhere (href="javascript:void(0)") once a handler
        # has acted.
        "javascript:void(0)",
    }
    for view in admin._views:
        for name, _text in getattr(view, "_actions", None) or []:
            handlers.add(f"return modelActions.execute('{name}');")
    return sorted(handlers)


def init_headers(app: Flask, admin) -> None:
    """Set the headers on every response of ``app``; ``admin`` is its Flask-Admin."""
    site_policy = policy_text(SITE_POLICY)
    # The views and their actions are all registered by now.
    hashes = " ".join(handler_hash(text) for text in admin_handlers(admin))
    admin_policy = policy_text(
        {**SITE_POLICY, "script-src": f"'self' 'unsafe-hashes' {hashes}"}
    )
    admin_url = admin.url.rstrip("/")

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        # Browsers must take our Content-Type at its word, for user files above all.
        headers.setdefault("X-Content-Type-Options", "nosniff")
        in_admin = request.path == admin_url or request.path.startswith(admin_url + "/")
        headers.setdefault(
            "Content-Security-Policy", admin_policy if in_admin else site_policy
        )
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if app.config["PREFERRED_URL_SCHEME"] == "https":
            headers.setdefault("Strict-Transport-Security", HSTS)
        return response
