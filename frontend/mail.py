"""Sending mail: Flask-Mailman underneath, links echoed to the console in file mode."""

import logging
from typing import Any

from flask import current_app
from flask_security import MailUtil

log = logging.getLogger(__name__)

# Context keys Flask-Security fills with the link a user has to follow.
_LINK_KEYS = ("confirmation_link", "reset_link", "login_link")


class LabqueueMailUtil(MailUtil):
    """Sends through Flask-Mailman; in file mode also prints the links.

    Without a mail server (development), mail goes to files under logs/mail/, and the
    link is printed to the console so that a newcomer can finish registering.
    """

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
        super().send_mail(template, subject, recipient, sender, body, html, **kwargs)
        if current_app.config.get("MAIL_BACKEND") != "file":
            return
        where = current_app.config.get("MAIL_FILE_PATH")
        log.warning("Mail %r to %s written under %s", str(subject), recipient, where)
        for key in _LINK_KEYS:
            if kwargs.get(key):
                log.warning("  %s: %s", key.replace("_", " "), kwargs[key])
