"""Flask-Security's mail (confirmation, reset, welcome) goes through the outbox.

Nothing is sent inside the request: the mail is written to the outbox, committed
after the view's work, and a worker sends it. A request for an address with an
account and one without so do the same work and take the same time, and an SMTP
outage delays account mail without losing it. In file mode (development) the
link is also printed to the console so that a newcomer can finish registering.
"""

import logging
from email.utils import formataddr
from typing import Any

from flask import after_this_request, current_app, g, has_request_context
from flask_security import MailUtil

from .outbox import commit_and_send, queue_mail

log = logging.getLogger(__name__)

# Context keys Flask-Security fills with the link a user has to follow.
_LINK_KEYS = ("confirmation_link", "reset_link", "login_link")


class LabqueueMailUtil(MailUtil):
    """Queues Flask-Security's mail in the outbox instead of sending it."""

    def send_mail(
        self,
        template: str,
        subject: str,
        recipient: Any,
        sender: Any,
        body: str | None,
        html: str | None,
        **kwargs: Any,
    ) -> None:
        if isinstance(recipient, tuple):  # (name, address)
            recipient = formataddr(recipient)
        mail = queue_mail(recipient, str(subject), body or "", html, confidential=True)
        if not has_request_context():  # a command line
            commit_and_send([mail])
        else:
            # Sent once the view's work is committed, after the response is made.
            if "labqueue_account_mail" not in g:
                g.labqueue_account_mail = []

                @after_this_request
                def _send(response):
                    send_queued()
                    return response

            g.labqueue_account_mail.append(mail)
        if current_app.config.get("MAIL_BACKEND") == "file":
            where = current_app.config.get("MAIL_FILE_PATH")
            log.warning(
                "Mail %r to %s queued; the worker writes it under %s",
                str(subject),
                recipient,
                where,
            )
            for key in _LINK_KEYS:
                if kwargs.get(key):
                    log.warning("  %s: %s", key.replace("_", " "), kwargs[key])


def send_queued() -> None:
    """Commit the mail this request queued, then have it sent."""
    commit_and_send(g.pop("labqueue_account_mail", []))
