"""Programmatic access: personal tokens, the REST API at /api/v1 (projects,
files, pipelines and analyses in ``views.py``, batches in ``batches.py``,
groups, shares and links in ``sharing.py``, resumable uploads in
``uploads.py``) and GA4GH TES at /ga4gh/tes/v1.

The OpenAPI document is made from the views and their schemas by flask-smorest
and served at /api/v1/openapi.json; /api/v1/docs shows it with Swagger UI,
served from the site's own static files.
"""

from __future__ import annotations

from flask import Flask, render_template
from flask_smorest import Api
from marshmallow import Schema, fields

from ..core.extensions import csrf
from ..tes.views import bp as tes_bp
from . import batches, sharing  # noqa: F401 (their routes are on blp)
from .auth import init_auth
from .uploads import blp as tus_blp
from .views import blp


class ErrorSchema(Schema):
    """Every API error: the status code, a sentence, and per-field messages."""

    error = fields.Int()
    message = fields.Str()
    errors = fields.Dict()


class LabqueueApi(Api):
    """flask-smorest's Api, with the site's own error handler (frontend/errors.py
    answers API paths in JSON) rather than one of its own for the whole app."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        pass


def init_api(app: Flask) -> None:
    config = app.config
    config.setdefault("API_TITLE", f"{config['APP_NAME']} API")
    config.setdefault("API_VERSION", "1")
    config.setdefault("OPENAPI_VERSION", "3.0.3")
    config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "basic": {"type": "http", "scheme": "basic"},
                }
            },
            "security": [{"bearer": []}, {"basic": []}],
        },
    )
    init_auth(app)
    api = LabqueueApi(app)
    for blueprint in (blp, tus_blp):
        csrf.exempt(blueprint)  # token-only: the API reads no cookie (auth.py)
        api.register_blueprint(blueprint)
    # GA4GH TES has its own specification: served beside the API, not in its
    # OpenAPI document.
    csrf.exempt(tes_bp)
    app.register_blueprint(tes_bp)

    @app.route("/api/v1/docs")
    def api_docs():
        """The API's reference, from its OpenAPI document."""
        return render_template("api/docs.html")
