"""Accounts: the profile page and the academic registration rule.

Sign-up, confirmation, login, logout and password flows are Flask-Security-Too's
views; this package supplies their form, mail sender and templates.
"""

from flask_login import user_logged_out
from flask_security import password_changed, password_reset
from flask_security.signals import tf_disabled, tf_profile_changed

from .services import (
    audit_password_changed,
    audit_password_reset,
    audit_two_factor_off,
    audit_two_factor_set,
    end_every_session,
)
from .views import bp  # the blueprint, with its routes

user_logged_out.connect(end_every_session)
password_changed.connect(audit_password_changed)
password_reset.connect(audit_password_reset)
tf_profile_changed.connect(audit_two_factor_set)
tf_disabled.connect(audit_two_factor_off)

__all__ = ["bp"]
