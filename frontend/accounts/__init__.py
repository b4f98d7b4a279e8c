"""Accounts: the profile page and the academic registration rule.

Sign-up, confirmation, login, logout and password flows are Flask-Security-Too's
views; this package supplies their form, mail sender and templates.
"""

from flask import Blueprint
from flask_login import user_logged_out

bp = Blueprint("accounts", __name__, url_prefix="/account")

from . import views  # noqa: E402,F401
from .services import end_every_session  # noqa: E402

user_logged_out.connect(end_every_session)
