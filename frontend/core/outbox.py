"""Mail that must not be lost: written to the database in the same transaction as
what it tells, sent after the commit by a task, and retried with a growing wait
until the mail server takes it. Admins see what is waiting under Admin → Mail.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_mailman import EmailMultiAlternatives

from . import taskq
from .extensions import db
from .models import OutgoingMail, utcnow

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120  # a sender holds a mail this long at most
MAX_WAIT_SECONDS = 3600  # between two tries, at most
WIPED = "(Removed once sent: this mail held a one-time link.)"


def queue_mail(
    recipient: str,
    subject: str,
    body: str,
    html: str | None = None,
    *,
    confidential: bool = False,
) -> OutgoingMail:
    """Add a mail to the session; it is sent once the caller commits.

    A ``confidential`` mail (one holding a sign-in or reset link) loses its text
    once the server has taken it.
    """
    mail = OutgoingMail(
        recipient=recipient,
        # One line, whatever went into it (a project named before names were
        # checked, say): a line break would make the header invalid.
        subject=" ".join(subject.split())[:255],
        body=body,
        html=html,
        confidential=confidential,
    )
    db.session.add(mail)
    return mail


def send_after_commit(mail_ids: list[int]) -> None:
    """Ask a worker to send these now (by task name: no task code imported); if
    the broker is away, the periodic flush sends them later."""
    for mail_id in mail_ids:
        if not taskq.send(taskq.SEND_MAIL, mail_id):
            log.warning("Mail %s waits for the next flush", mail_id)


def commit_and_send(mails: list[OutgoingMail]) -> None:
    """Commit the session that holds ``mails``, then have them sent."""
    db.session.commit()
    send_after_commit([mail.id for mail in mails])


def _claim(mail_id: int) -> bool:
    stamp = utcnow()
    claimed = db.session.execute(
        sa.update(OutgoingMail)
        .where(
            OutgoingMail.id == mail_id,
            OutgoingMail.sent_at.is_(None),
            sa.or_(
                OutgoingMail.claimed_until.is_(None),
                OutgoingMail.claimed_until < stamp,
            ),
        )
        .values(claimed_until=stamp + timedelta(seconds=CLAIM_SECONDS))
    ).rowcount
    db.session.commit()
    return bool(claimed)


def send(mail_id: int) -> bool:
    """Send one waiting mail, unless another sender has it or it went already;
    returns whether it went now. A failure sets when to try again."""
    if not _claim(mail_id):
        return False
    mail = db.session.get(OutgoingMail, mail_id)
    try:
        message = EmailMultiAlternatives(
            subject=mail.subject, body=mail.body, to=[mail.recipient]
        )
        if mail.html:
            message.attach_alternative(mail.html, "text/html")
        message.send()
    except Exception as exc:  # any SMTP or network trouble: try again later
        mail.attempts += 1
        wait = min(
            current_app.config["MAIL_RETRY_SECONDS"] * 2**mail.attempts,
            MAX_WAIT_SECONDS,
        )
        mail.next_attempt_at = utcnow() + timedelta(seconds=wait)
        mail.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        mail.claimed_until = None
        db.session.commit()
        log.warning(
            "Mail %s to %s not sent (try %s): %s",
            mail.id,
            mail.recipient,
            mail.attempts,
            exc,
        )
        return False
    mail.sent_at = utcnow()
    mail.attempts += 1
    mail.last_error = None
    if mail.confidential:
        mail.body, mail.html = WIPED, None
    db.session.commit()
    return True


def flush() -> int:
    """Send every mail that is due; returns how many went."""
    due = db.session.scalars(
        sa.select(OutgoingMail.id)
        .where(
            OutgoingMail.sent_at.is_(None),
            OutgoingMail.next_attempt_at <= utcnow(),
        )
        .order_by(OutgoingMail.id)
    ).all()
    return sum(send(mail_id) for mail_id in due)
