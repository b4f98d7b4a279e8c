"""What the site keeps a record of: mail waiting or sent, API tokens, the audit
trail."""

from __future__ import annotations

from flask import flash
from flask_admin.actions import action

from ..api.tokens import revoke as revoke_token
from ..core.extensions import db
from ..core.models import (
    ApiToken,
)
from .base import SecureModelView


class RecordView(SecureModelView):
    """A record the app keeps: admins read it, never create, edit or delete it
    here (a token is revoked by its action, not deleted)."""

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True


class OutgoingMailView(RecordView):
    """Mail the site sends through its outbox: what waits, and why."""

    column_list = (
        "id",
        "recipient",
        "subject",
        "created_at",
        "sent_at",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    column_filters = ("sent_at", "recipient", "created_at")
    column_searchable_list = ("recipient", "subject")
    column_default_sort = ("created_at", True)
    column_labels = {"sent_at": "Sent", "last_error": "Last error"}


class AuditEventView(RecordView):
    """The audit trail: read only, newest first, searchable."""

    column_list = ("at", "action", "actor_email", "target", "ip", "detail")
    column_searchable_list = ("action", "actor_email", "target", "ip", "detail")
    column_filters = ("at", "action", "actor_email", "ip")
    column_default_sort = ("at", True)
    column_labels = {"actor_email": "Who", "ip": "From", "at": "When"}


class ApiTokenView(RecordView):
    """Personal API tokens: who holds which, when each was last used; revoke."""

    column_list = (
        "user",
        "name",
        "prefix",
        "read_only",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
    )
    column_searchable_list = ("name", "prefix", "user.email")
    column_filters = ("read_only", "revoked_at", "expires_at", "last_used_at")
    column_default_sort = ("created_at", True)
    column_labels = {"prefix": "Starts with", "last_used_ip": "Last used from"}

    @action("revoke", "Revoke", "Revoke the selected tokens? Scripts using them stop.")
    def action_revoke(self, ids: list[str]) -> None:
        stmt = db.select(ApiToken).where(
            ApiToken.id.in_(ids), ApiToken.revoked_at.is_(None)
        )
        tokens = list(db.session.scalars(stmt))
        for token in tokens:
            revoke_token(token, "by an admin")
        flash(f"{len(tokens)} token(s) revoked.", "success")
