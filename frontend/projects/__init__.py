"""Projects: a user's data, uploaded, browsed, previewed and downloaded."""

from flask import Blueprint

bp = Blueprint("projects", __name__, url_prefix="/projects")

from . import views  # noqa: E402,F401
