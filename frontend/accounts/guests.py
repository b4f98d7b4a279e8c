"""Guests (ALLOW_GUESTS): a visitor tries the site without an account.

A guest is a ``User`` with ``guest_until`` set: no address of their own (a unique
``@guests.invalid`` one), no password, signed in by the session and remember
cookies of their browser, with GUEST_QUOTA_BYTES of storage. They upload and run
like anyone, but cannot share, join groups or make API tokens. Every page says
when their account goes; the retention pass removes it then (a run going on is
waited for). A guest who registers (Flask-Security's form and ``register_user``,
so the address rules, password checks and confirmation mail are the usual ones)
gets a new account, and their projects and runs move to it.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from ..core import audit
from ..core.extensions import db
from ..core.layout import user_dir
from ..core.models import FINISHED_STATES, Analysis, Batch, Project, User, utcnow
from ..core.security import security

log = logging.getLogger(__name__)
REFUSED = (
    "Guests cannot do this: register (it is free) to share, join groups and use "
    "the API."
)
# What guests may not open: sharing (but share links, open to anyone), API
# tokens, and the account pages that need an address or a password.
BLOCKED_PREFIXES = ("sharing.",)
ALLOWED = ("sharing.link_",)
BLOCKED = {
    "accounts.create_token",
    "accounts.revoke_token",
    "security.change_password",
    "security.two_factor_setup",
    "security.two_factor_setup_validate",
    "security.tf_select",
    "security.verify",
}


def blocked(endpoint: str | None) -> bool:
    endpoint = endpoint or ""
    if endpoint.startswith(ALLOWED):
        return False
    return endpoint in BLOCKED or endpoint.startswith(BLOCKED_PREFIXES)


class GuestRefused(Exception):
    """A guest may not do this now; the message says why."""


def start(ip: str | None) -> User:
    """A new guest account, for one browser."""
    stamp = utcnow()
    config = current_app.config
    user = security.datastore.create_user(
        email=f"guest-{secrets.token_hex(8)}@guests.invalid",
        password=None,
        first_name="Guest",
        confirmed_at=stamp,
        guest_until=stamp + timedelta(hours=config["GUEST_HOURS"]),
        storage_quota=config["GUEST_QUOTA_BYTES"],
        notify_by_email=False,
    )
    db.session.flush()
    audit.record("guest.started", audit.user_label(user), ip or "", actor=user)
    db.session.commit()
    return user


def busy(user: User) -> bool:
    """Whether ``user`` has a run queued or going on."""
    return (
        db.session.scalar(
            sa.select(Analysis.id)
            .where(Analysis.owner_id == user.id, Analysis.state.not_in(FINISHED_STATES))
            .limit(1)
        )
        is not None
    )


def check_can_register(guest: User) -> None:
    if busy(guest):
        raise GuestRefused(
            "Wait until your analyses have ended (or cancel them), then register: "
            "they move to your new account with your projects."
        )


def move_to(guest: User, user: User) -> int:
    """Give ``user`` the guest's projects with their files and runs (folders moved
    on disk, on the same filesystem), then remove the guest; returns how many
    projects moved."""
    projects = list(
        db.session.scalars(sa.select(Project).where(Project.owner_id == guest.id))
    )
    user_dir(user.id).mkdir(parents=True, exist_ok=True)
    for project in projects:
        source = user_dir(guest.id) / str(project.id)
        if source.exists():
            os.replace(source, user_dir(user.id) / str(project.id))
        project.owner_id = user.id
    for model in (Analysis, Batch):
        db.session.execute(
            sa.update(model).where(model.owner_id == guest.id).values(owner_id=user.id)
        )
    audit.record(
        "guest.registered",
        audit.user_label(user),
        f"from {guest.email}, {len(projects)} project(s) kept",
        actor=user,
    )
    db.session.flush()
    guest_folder = user_dir(guest.id)
    db.session.delete(guest)
    db.session.commit()
    try:
        guest_folder.rmdir()  # empty now
    except OSError:
        pass  # never made, or something was left: the retention pass clears it
    return len(projects)


def expired(now) -> list[User]:
    """Guests whose time is over, none with a run going on."""
    going = sa.select(Analysis.owner_id).where(Analysis.state.not_in(FINISHED_STATES))
    return list(
        db.session.scalars(
            sa.select(User).where(
                User.guest_until.is_not(None),
                User.guest_until <= now,
                User.id.not_in(going),
            )
        )
    )
