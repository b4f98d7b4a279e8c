"""Groups and sharing: a lab's groups, projects shared with groups or people,
and read-only links to one analysis."""

from flask import Blueprint

bp = Blueprint("sharing", __name__)

from . import views  # noqa: E402,F401
