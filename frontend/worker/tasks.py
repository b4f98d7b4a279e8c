"""Celery tasks: thin adapters that take an id (or nothing) and call services.

Every task is short: none waits for a pipeline (the watcher in each worker's main
process follows runs), so none holds a RabbitMQ delivery near consumer_timeout.
Tasks are sent by name (``core/taskq.py``), so the web side never imports this module.
"""

import socket

import sqlalchemy as sa
from celery import shared_task

from .. import retention
from ..accounts.services import send_account_mail
from ..core import limits, outbox, taskq
from ..core.extensions import db
from ..core.models import User, utcnow
from ..core.queue import dispatch
from ..projects import resumable
from .images import check_images
from .recovery import reconcile
from .start import start


@shared_task(name=taskq.PING)
def ping() -> dict:
    """Answer a health check from a worker, proving it reaches the database."""
    users = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    return {
        "hostname": socket.gethostname(),
        "time": utcnow().isoformat(timespec="seconds"),
        "users": users,
    }


@shared_task(name=taskq.START, ignore_result=True)
def start_analysis(analysis_id: int) -> str:
    """Claim analysis ``analysis_id`` and launch it; returns at once."""
    return start(analysis_id)


@shared_task(name=taskq.DISPATCH, ignore_result=True)
def dispatch_analyses() -> list[int]:
    """Send "start" for queued analyses that are due, fairly, within the limits."""
    return dispatch()


@shared_task(name=taskq.RECONCILE, ignore_result=True)
def reconcile_analyses() -> dict:
    """Adopt, requeue or fail runs whose start or host was lost; remove strays."""
    return reconcile()


@shared_task(name=taskq.CHECK_IMAGES, ignore_result=True)
def check_pipeline_images() -> dict:
    """Record which pipelines' images this worker's runner has."""
    return check_images()


@shared_task(name=taskq.SEND_MAIL, ignore_result=True)
def send_mail(mail_id: int) -> bool:
    """Send one mail of the outbox (a failure is retried by the flush)."""
    return outbox.send(mail_id)


@shared_task(name=taskq.FLUSH_MAIL, ignore_result=True)
def flush_mail() -> int:
    """Send every mail of the outbox that is due."""
    return outbox.flush()


@shared_task(name=taskq.ACCOUNT_MAIL, ignore_result=True)
def account_mail(kind: str, email: str) -> bool:
    """Send the reset or confirmation mail asked for, if the address has an
    account it suits (decided here, so the web does the same for any address)."""
    return send_account_mail(kind, email)


@shared_task(name=taskq.FORGET_LAPSED_LIMITS, ignore_result=True)
def forget_lapsed_limits() -> int:
    """Remove login and request counts whose window has passed."""
    return limits.forget_lapsed()


@shared_task(name=taskq.EXPIRE_UPLOADS, ignore_result=True)
def expire_uploads() -> int:
    """Remove resumable uploads that received nothing for RESUMABLE_UPLOAD_HOURS."""
    return resumable.expire()


@shared_task(name=taskq.PURGE, ignore_result=True)
def purge() -> list[str]:
    """Apply the retention policy: warn, then delete what was warned about."""
    return retention.purge(utcnow()).lines()
