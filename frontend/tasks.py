"""Celery tasks: thin adapters that load rows by id and call services."""

import socket

import sqlalchemy as sa
from celery import shared_task
from flask import current_app

from .analyses.execution import Deferred, check_images, execute, reconcile
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


@shared_task(name="labqueue.run_analysis", bind=True, acks_late=False, max_retries=None)
def run_analysis(self, analysis_id: int) -> str:
    """Run analysis ``analysis_id`` if it is still queued.

    Acknowledged on receipt, unlike the other tasks: a run can outlast RabbitMQ's
    consumer_timeout, and the analysis row (claimed atomically, with a heartbeat)
    is what makes it safe. A worker that dies mid-run is found by the reconciler.
    """
    try:
        return execute(analysis_id)
    except Deferred as wait:
        raise self.retry(countdown=current_app.config["DEFER_SECONDS"]) from wait


@shared_task(name="labqueue.reconcile")
def reconcile_analyses() -> dict:
    """Requeue or fail runs whose worker died, and remove orphan containers."""
    return reconcile()


@shared_task(name="labqueue.check_images")
def check_pipeline_images() -> dict:
    """Record which pipelines' images this worker's runner has."""
    return check_images()
