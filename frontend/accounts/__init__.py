"""Accounts: the profile page and the academic registration rule.

Sign-up, confirmation, login, logout and password flows are Flask-Security-Too's
views; this package supplies their form, mail sender and templates.
"""

from flask import Blueprint
from flask_login import user_logged_out
from flask_security import password_changed, password_reset
from flask_security.signals import tf_disabled, tf_profile_changed

bp = Blueprint("accounts", __name__, url_prefix="/account")

from . import views  # noqa: E402,F401
from .services import (  # noqa: E402
    audit_password_changed,
    audit_password_reset,
    audit_two_factor_off,
    audit_two_factor_set,
    end_every_session,
)

user_logged_out.connect(end_every_session)
password_changed.connect(audit_password_changed)
password_reset.connect(audit_password_reset)
tf_profile_changed.connect(audit_two_factor_set)
tf_disabled.connect(audit_two_factor_off)
