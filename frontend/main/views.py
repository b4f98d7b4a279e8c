from flask import Blueprint, render_template

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """Home page: what this site is and where to start."""
    return render_template("main/index.html")


@bp.route("/about")
def about():
    """About and help: how registration, projects and runs work."""
    return render_template("main/about.html")
