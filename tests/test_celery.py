"""Tasks round-trip through a real worker process, over each kind of broker."""

from __future__ import annotations

import uuid

import flask_migrate
import pytest

from frontend import create_app
from frontend.celery_app import broker_settings
from tests.conftest import base_config
from tests.services import require_rabbitmq
from tests.workers import Worker


def round_trip(tmp_path, smtp, make_users: int, **overrides) -> dict:
    config = {**base_config(tmp_path, smtp), "CELERY_QUEUE": f"q-{uuid.uuid4().hex}"}
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade()
        from frontend.core.extensions import db
        from frontend.core.security import security

        for n in range(make_users):
            security.datastore.create_user(email=f"u{n}@cs.ox.ac.uk", password=None)
        db.session.commit()
    worker = Worker(config)
    celery = app.extensions["celery"]
    try:
        assert "ready, consuming from" in worker.wait_ready()
        return celery.send_task("labqueue.ping").get(timeout=60)
    finally:
        worker.stop()
        close_connections(celery)


def close_connections(celery) -> None:
    """Close the client's broker and result connections (they are pooled)."""
    consumer = getattr(celery.backend, "result_consumer", None)
    if consumer is not None and consumer._connection is not None:
        consumer.stop()
        consumer._connection.close()
    celery.close()


def test_round_trip_through_the_embedded_broker(tmp_path, smtp):
    answer = round_trip(tmp_path, smtp, make_users=2)
    # The worker ran the task inside the app context, against our database.
    assert answer["users"] == 2


@pytest.mark.rabbitmq
def test_round_trip_through_rabbitmq(tmp_path, smtp):
    url = require_rabbitmq()
    answer = round_trip(
        tmp_path, smtp, make_users=3, CELERY_BROKER_URL=url, CELERY_RESULT_BACKEND=""
    )
    assert answer["users"] == 3


def test_embedded_broker_is_the_development_default(tmp_path):
    broker, backend = broker_settings({}, str(tmp_path))
    assert broker == f"sqla+sqlite:///{tmp_path}/celery-broker.sqlite"
    assert backend.startswith("db+sqlite:///")
    broker, backend = broker_settings(
        {"CELERY_BROKER_URL": "amqp://rabbit:5672//"}, str(tmp_path)
    )
    assert (broker, backend) == ("amqp://rabbit:5672//", "rpc://")


def test_reliability_settings_for_long_tasks(app):
    conf = app.extensions["celery"].conf
    assert conf.task_acks_late is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is True
