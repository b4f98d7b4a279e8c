"""Accounts: the profile page and the academic registration rule.

Sign-up, confirmation, login, logout and password flows are Flask-Security-Too's
views; this package supplies their form, mail sender and templates.
"""

from flask import Blueprint

bp = Blueprint("accounts", __name__, url_prefix="/account")

from . import views  # noqa: E402,F401
