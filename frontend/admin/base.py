"""What every admin view shares: admins only (two-factor when the site asks
for it), and list pages of 50 rows."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_security import current_user


class AdminOnlyMixin:
    """Only the ``admin`` role gets in; others get 403, anonymous users the login."""

    def is_accessible(self) -> bool:
        return (
            current_user.is_authenticated
            and current_user.has_role("admin")
            and not _needs_two_factor()
        )

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(
                url_for("security.login", next=request.full_path.rstrip("?"))
            )
        if current_user.has_role("admin") and _needs_two_factor():
            flash("This site requires two-factor login for admins: set it up first.")
            return redirect(url_for("security.two_factor_setup"))
        abort(403)


def _needs_two_factor() -> bool:
    """Someone signed in before the site required them a second factor (the
    User's own rule), who has not set one up yet (a new login would ask)."""
    return current_user.check_tf_required_setup() and not current_user.tf_primary_method


class SecureModelView(AdminOnlyMixin, ModelView):
    page_size = 50
