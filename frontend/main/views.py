import sqlalchemy as sa
from flask import Blueprint, render_template

from ..core.extensions import db

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """Home page: what this site is and where to start."""
    return render_template("main/index.html")


@bp.route("/about")
def about():
    """About and help: how registration, projects and runs work."""
    return render_template("main/about.html")


@bp.route("/health")
def health():
    """For a container's health check: 200 when the app reaches its database."""
    plain = {"Content-Type": "text/plain; charset=utf-8"}
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        db.session.rollback()
        return "the database does not answer\n", 503, plain
    return "ok\n", 200, plain
