"""The audit trail: security and admin events written beside the change they record.

``record`` adds a row to the session, so it is committed (or rolled back) with the
change itself; who and from where come from the request, when there is one.
Admins list and search the rows under Admin → Audit trail.
"""

from __future__ import annotations

from flask import has_request_context, request
from flask_login import current_user

from .extensions import db
from .models import AuditEvent, User


def record(
    action: str, target: str = "", detail: str = "", actor: User | None = None
) -> AuditEvent:
    """Add an audit row for ``action`` on ``target`` (committed by the caller).

    The actor is the signed-in user unless given; the address is the request's.
    """
    ip = None
    if has_request_context():
        ip = request.remote_addr
        if actor is None and current_user.is_authenticated:
            actor = current_user._get_current_object()
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else None,
        target=target[:255],
        ip=ip,
        detail=detail,
    )
    db.session.add(event)
    return event


def user_label(user: User) -> str:
    return f"user {user.id} <{user.email}>"
