"""Login protection: attempts counted per email address and per client IP, in the
database (every web process sees the same counts), with a growing wait once the
free ones are spent, and accounts locked after repeated failed logins.

- **Login**: failed attempts count for the email typed and for the client's IP.
  After ``RATE_LIMIT_FREE_ATTEMPTS`` each further attempt waits twice as long as the
  last (from ``RATE_LIMIT_FIRST_DELAY_SECONDS`` up to ``RATE_LIMIT_MAX_DELAY_SECONDS``);
  an attempt made sooner is refused (429, with Retry-After) without the password
  being checked. ``ACCOUNT_LOCK_AFTER`` failures lock the account: it gets a mail
  with a link that unlocks it, admins see and clear locks. A login that succeeds
  clears its account's count.
- **Registration, reset and confirmation requests**: every request counts, for the
  client's IP and (reset, confirmation) the email asked about.

Counts lapse ``RATE_LIMIT_WINDOW_SECONDS`` after their first attempt; a periodic
task removes them then (``forget_lapsed``).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import (
    Flask,
    current_app,
    g,
    has_request_context,
    render_template,
    request,
    session,
)
from flask_login import current_user
from flask_security.signals import user_failed_authn
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.exceptions import RequestEntityTooLarge, TooManyRequests

from . import audit
from .extensions import db
from .links import external_url
from .models import RateLimit, User, utcnow
from .outbox import commit_and_send, queue_mail
from .security import security

# The endpoints whose POSTs are limited, and by what besides the client's IP.
LIMITED = {
    "security.login": "login",
    "security.two_factor_token_validation": "login",
    "security.register": "register",
    "security.forgot_password": "mail",
    "security.send_confirmation": "mail",
    "accounts.create_token": "token",
}
LOGIN_STEPS = ("security.login", "security.two_factor_token_validation")
UNLOCK_SALT = "labqueue-unlock"


def _email_in_request() -> str:
    try:
        if request.form:
            email = request.form.get("email")
        else:
            data = request.get_json(silent=True)
            email = data.get("email") if isinstance(data, dict) else None
    except RequestEntityTooLarge:  # refused on its own; the IP still counts
        return ""
    return str(email or "").strip().lower()[:255]


def keys_for(kind: str) -> list[str]:
    keys = [f"{kind}-ip:{request.remote_addr}"]
    if kind in ("login", "mail") and (email := _email_in_request()):
        keys.append(f"{kind}-address:{email}")
    elif request.endpoint == "security.two_factor_token_validation":
        # The code's account is the one whose password was just given.
        pending = session.get("tf_user_id")
        user = security.datastore.find_user(fs_uniquifier=pending) if pending else None
        if user is not None:
            keys.append(f"login-address:{user.email.lower()}")
    return keys


def _free(key: str) -> int:
    """Attempts free of any wait: more for an IP, which a whole lab may share."""
    config = current_app.config
    if "-ip:" in key:
        return config["RATE_LIMIT_FREE_PER_IP"]
    return config["RATE_LIMIT_FREE_ATTEMPTS"]


def seconds_to_wait(keys: list[str]) -> float:
    """How long the attempt must wait (0: it may go ahead)."""
    now = utcnow()
    until = db.session.scalar(
        sa.select(sa.func.max(RateLimit.blocked_until)).where(
            RateLimit.key.in_(keys), RateLimit.blocked_until > now
        )
    )
    return (until - now).total_seconds() if until else 0.0


def _delay(key: str, attempts: int) -> float:
    config = current_app.config
    over = attempts - _free(key)
    if over <= 0:
        return 0.0
    first = config["RATE_LIMIT_FIRST_DELAY_SECONDS"]
    return min(first * 2 ** min(over - 1, 40), config["RATE_LIMIT_MAX_DELAY_SECONDS"])


def _window_start(now: datetime) -> datetime:
    """Counts begun before this have lapsed."""
    return now - timedelta(seconds=current_app.config["RATE_LIMIT_WINDOW_SECONDS"])


def _add_attempt(key: str, now: datetime, lapsed: datetime) -> tuple[int, datetime]:
    """Count one attempt for ``key`` atomically (two processes may count it at
    once), starting again if its count began before ``lapsed``; returns the count
    and when it began."""
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    table = RateLimit.__table__
    fresh = dialect.insert(table).values(key=key, attempts=1, first_at=now)
    row = db.session.execute(
        fresh.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "attempts": sa.case(
                    (table.c.first_at < lapsed, 1), else_=table.c.attempts + 1
                ),
                "first_at": sa.case(
                    (table.c.first_at < lapsed, now), else_=table.c.first_at
                ),
            },
        ).returning(table.c.attempts, table.c.first_at)
    ).one()
    return row.attempts, row.first_at


def count(keys: list[str]) -> dict[str, int]:
    """Count one attempt for each key; returns each key's count, and sets the
    growing wait of those past their free attempts. Committed by the caller."""
    now = utcnow()
    lapsed = _window_start(now)
    counts = {}
    for key in keys:
        attempts, _first = _add_attempt(key, now, lapsed)
        if wait := _delay(key, attempts):
            db.session.execute(
                sa.update(RateLimit)
                .where(RateLimit.key == key)
                .values(blocked_until=now + timedelta(seconds=wait))
            )
        counts[key] = attempts
    return counts


def count_in_window(key: str, seconds: int) -> tuple[int, float]:
    """Count one attempt for ``key`` in a fixed window of ``seconds`` (committed);
    returns the window's count and the seconds left in it."""
    now = utcnow()
    attempts, first = _add_attempt(key, now, now - timedelta(seconds=seconds))
    db.session.commit()
    return attempts, (first + timedelta(seconds=seconds) - now).total_seconds()


def refuse_if_waiting() -> None:
    """Before a limited POST: refuse it while one of its keys must wait, and count
    the requests that are counted whatever their outcome."""
    kind = LIMITED.get(request.endpoint or "")
    if kind is None or request.method != "POST":
        return
    keys = keys_for(kind)
    wait = seconds_to_wait(keys)
    if wait > 0:
        seconds = math.ceil(wait)
        raise TooManyRequests(
            f"Too many attempts for this account or from your address. Wait "
            f"{seconds} second{'s' if seconds != 1 else ''} and try again.",
            retry_after=seconds,
        )
    if kind != "login":  # a login counts only when it fails (after the request)
        count(keys)
        db.session.commit()


def note_failed_authn(sender, user: User, auth_type: str, tfa: bool, **extra) -> None:
    """Flask-Security's signal for a credential that did not verify (a wrong
    password, or a wrong two-factor code): remembered for after the request."""
    if has_request_context():
        g.labqueue_failed_authn = (user, "two-factor code" if tfa else auth_type)


def after_login_attempt(response):
    """After a limited POST to the login or the two-factor code: count a failure,
    lock the account when there were too many, or clear its count on success."""
    if request.endpoint not in LOGIN_STEPS or request.method != "POST":
        return response
    if response.status_code in (413, 429):  # refused before any password check
        return response
    failed = g.pop("labqueue_failed_authn", None)
    if current_user.is_authenticated:  # signed in: the account's count restarts
        _forget(f"login-address:{current_user.email.lower()}")
        return response
    if failed is not None:
        user, what = failed
        email = user.email.lower()
    elif request.endpoint == "security.login":
        email = _email_in_request()
        if security.datastore.find_user(case_insensitive=True, email=email):
            return response  # the password was right: a code or a lock comes next
        user, what = None, "address (no such account)"
    else:
        return response  # no code was checked
    account = f"login-address:{email}"
    counts = count([f"login-ip:{request.remote_addr}"] + ([account] if email else []))
    # The account's own count decides a lock (an IP may be a whole lab's).
    failures = counts.get(account, 0)
    audit.record("login.failed", email, f"wrong {what}, attempt {failures}")
    mails = []
    if (
        user is not None
        and user.locked_at is None
        and failures >= current_app.config["ACCOUNT_LOCK_AFTER"]
    ):
        mails.append(lock(user, f"after {failures} failed logins"))
    commit_and_send(mails)
    return response


def _forget(key: str) -> None:
    db.session.execute(sa.delete(RateLimit).where(RateLimit.key == key))
    db.session.commit()


def lock(user: User, why: str):
    """Lock ``user``'s account and queue the mail that unlocks it."""
    user.locked_at = utcnow()
    audit.record("account.locked", audit.user_label(user), why)
    token = _serializer().dumps([user.id, user.locked_at.isoformat()])
    link = external_url("accounts.unlock", token=token)
    body = render_template("accounts/email/unlock.txt", user=user, link=link)
    return queue_mail(
        user.email, "Your Labqueue account was locked", body, confidential=True
    )


def unlock(user: User, how: str) -> None:
    """Clear ``user``'s lock and its failed-login count (committed here)."""
    user.locked_at = None
    audit.record("account.unlocked", audit.user_label(user), how)
    _forget(f"login-address:{user.email.lower()}")


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=UNLOCK_SALT)


def user_to_unlock(token: str) -> User | None:
    """The locked user an unlock link is for, while the link is valid: one lock
    only (a later lock needs its own mail), within UNLOCK_LINK_DAYS."""
    max_age = current_app.config["UNLOCK_LINK_DAYS"] * 86400
    try:
        user_id, locked_at = _serializer().loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or user.locked_at is None:
        return None
    if user.locked_at.isoformat() != locked_at:
        return None
    return user


def forget_lapsed() -> int:
    """Remove the counts whose window has passed and that hold no wait; returns
    how many went (run periodically by the workers)."""
    now = utcnow()
    lapsed = _window_start(now)
    gone = db.session.execute(
        sa.delete(RateLimit).where(
            RateLimit.first_at < lapsed,
            sa.or_(RateLimit.blocked_until.is_(None), RateLimit.blocked_until < now),
        )
    ).rowcount
    db.session.commit()
    return gone


def init_app(app: Flask) -> None:
    app.before_request(refuse_if_waiting)
    app.after_request(after_login_attempt)
    user_failed_authn.connect(note_failed_authn, app)
