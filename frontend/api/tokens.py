"""Personal API tokens: made, listed, checked and revoked.

A token is ``lq_`` and 43 characters of ``secrets.token_urlsafe(32)``. Only its
sha256 is stored (the secret has 256 random bits: there is nothing to guess, so
nothing to stretch), with its first characters to tell tokens apart in lists.
The secret is shown once, when the token is made.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context

from ..core import audit
from ..core.extensions import db
from ..core.models import ApiToken, User, utcnow

SECRET_PREFIX = "lq_"  # noqa: S105 (a marker, not a secret)
SHOWN_CHARACTERS = 10  # "lq_" and 7 of the secret, shown in lists
# last_used_at is written at most this often for a token (not on every call).
LAST_USED_EVERY = timedelta(minutes=1)


class TokenRefused(ValueError):
    """A token that cannot be made as asked, in words for its owner."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def live_tokens(user: User) -> list[ApiToken]:
    """The user's tokens not revoked, newest first (expired ones included)."""
    return list(
        db.session.scalars(
            sa.select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def expiry_choices() -> list[int]:
    """Lifetimes offered, in days; 0 (never expires) only where the site allows."""
    longest = current_app.config["API_TOKEN_MAX_DAYS"]
    days = [d for d in (7, 30, 90, 365) if not longest or d <= longest]
    if longest and longest not in days:
        days.append(longest)
    return sorted(days) + ([] if longest else [0])


def create(
    user: User, name: str, days: int | None = None, read_only: bool = False
) -> tuple[ApiToken, str]:
    """Make a token for ``user`` (committed); returns it and its secret, which is
    never stored. ``days`` None takes API_TOKEN_DAYS; 0 never expires."""
    config = current_app.config
    name = " ".join((name or "").split())
    if not name:
        raise TokenRefused("Give the token a name, to tell it from your others.")
    if len(name) > 100:
        raise TokenRefused("A token's name has at most 100 characters.")
    held = live_tokens(user)
    if any(token.name == name for token in held):
        raise TokenRefused(f"You already have a token named “{name}”.")
    if len(held) >= config["API_TOKENS_PER_USER"]:
        raise TokenRefused(
            f"You have {config['API_TOKENS_PER_USER']} tokens, the most allowed: "
            "revoke one you no longer use first."
        )
    days = config["API_TOKEN_DAYS"] if days is None else days
    longest = config["API_TOKEN_MAX_DAYS"]
    if days < 0 or (longest and (days == 0 or days > longest)):
        limit = f"at most {longest} days" if longest else "any number of days"
        raise TokenRefused(f"A token may last {limit}.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(
        user=user,
        name=name,
        digest=digest(secret),
        prefix=secret[:SHOWN_CHARACTERS],
        read_only=read_only,
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
    )
    db.session.add(token)
    scope = "read-only" if read_only else "read and write"
    lasting = f"expires in {days} days" if days else "never expires"
    where = "" if has_request_context() else ", from the command line"
    audit.record(
        "token.created",
        f"token {token.prefix}… of {user.email}",
        f"“{name}”, {scope}, {lasting}{where}",
    )
    db.session.commit()
    return token, secret


def get_own_or_404(user: User, token_id: int) -> ApiToken:
    return db.first_or_404(
        sa.select(ApiToken).where(
            ApiToken.id == token_id,
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
        )
    )


def revoke(token: ApiToken, how: str) -> None:
    """Revoke ``token`` at once (committed): no call is accepted with it again."""
    if token.revoked_at is not None:
        return
    token.revoked_at = utcnow()
    audit.record("token.revoked", f"token {token.prefix}… of {token.user.email}", how)
    db.session.commit()


def authenticate(secret: str, ip: str | None) -> ApiToken | None:
    """The usable token whose secret this is (its owner active), or None."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 100:
        return None
    token = db.session.scalar(
        sa.select(ApiToken).where(ApiToken.digest == digest(secret))
    )
    now = utcnow()
    if token is None or not token.usable(now) or not token.user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        db.session.execute(
            sa.update(ApiToken)
            .where(ApiToken.id == token.id)
            .values(last_used_at=now, last_used_ip=ip)
        )
        db.session.commit()
    return token


def state_of(token: ApiToken, now: datetime | None = None) -> str:
    """ "active", "expired" or "revoked", for lists."""
    if token.revoked_at is not None:
        return "revoked"
    return "active" if token.usable(now or utcnow()) else "expired"
