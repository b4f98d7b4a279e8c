"""Work that outlives a request goes to the workers as a task sent by name: the
pages, the API and the worker itself all send with ``send``, and none of them
imports the worker's code. The names below are the ones ``frontend/worker/tasks.py``
registers; the beat's schedule names them too.

A task carries an id, never state: the database row says what is to be done. When
the broker is away ``send`` says so (False, and a line in the log) instead of
raising, and each caller has its own way of being caught up: the dispatcher sends
due runs again, the mail flush sends unsent mail again.
"""

from __future__ import annotations

import logging

from flask import current_app

log = logging.getLogger(__name__)

START = "labqueue.start"
DISPATCH = "labqueue.dispatch"
RECONCILE = "labqueue.reconcile"
CHECK_IMAGES = "labqueue.check_images"
SEND_MAIL = "labqueue.send_mail"
FLUSH_MAIL = "labqueue.flush_mail"
ACCOUNT_MAIL = "labqueue.account_mail"
FORGET_LAPSED_LIMITS = "labqueue.forget_lapsed_limits"
EXPIRE_UPLOADS = "labqueue.expire_uploads"
PURGE = "labqueue.purge"
PING = "labqueue.ping"


# A pooled connection the broker has closed meanwhile (a restart, a forced close,
# missed heartbeats) fails the next send: it is opened again and the send tried
# once more at once. A broker that is away refuses both quickly.
ONE_MORE_TRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0}


def send(name: str, *args, queue: str | None = None, retry: bool = False) -> bool:
    """Send task ``name`` with ``args`` (to ``queue``, else the shared one); False
    when the broker did not take it. No result is kept: a waiting result would
    make Celery also wait for the result backend, which retries for as long as
    the broker is away. With ``retry``, Celery's own retry policy (a few tries,
    spaced) is used instead of one more try."""
    options = {} if retry else {"retry_policy": ONE_MORE_TRY}
    try:
        current_app.extensions["celery"].send_task(
            name,
            args=list(args),
            queue=queue,
            retry=True,
            ignore_result=True,
            **options,
        )
    except Exception as exc:  # the broker is away: the caller catches up later
        log.warning("Task %s %s not sent: %s", name, list(args), exc)
        return False
    return True
