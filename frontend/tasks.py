"""Celery tasks: thin adapters that load rows by id and call services."""

import socket

import sqlalchemy as sa
from celery import shared_task

from .extensions import db
from .models import User, utcnow


@shared_task(name="labqueue.ping")
def ping() -> dict:
    """Answer a health check from a worker, proving it reaches the database."""
    users = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    return {
        "hostname": socket.gethostname(),
        "time": utcnow().isoformat(timespec="seconds"),
        "users": users,
    }
