"""Accounts: the profile page and the academic registration rule.

Sign-up, confirmation, login, logout and password flows are Flask-Security-Too's
views; this package supplies their form, mail sender and templates.
"""

from flask import Blueprint
from flask_login import user_logged_out
from flask_security import password_changed, password_reset

bp = Blueprint("accounts", __name__, url_prefix="/account")

from . import views  # noqa: E402,F401
from .services import (  # noqa: E402
    audit_password_changed,
    audit_password_reset,
    end_every_session,
)

user_logged_out.connect(end_every_session)
password_changed.connect(audit_password_changed)
password_reset.connect(audit_password_reset)
