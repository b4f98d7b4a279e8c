"""Celery, configured from the Flask config; every task runs in the app context."""

from pathlib import Path

from celery import Celery, Task
from flask import Flask
from kombu import Queue

from .core import taskq
from .core.runners import runner_queue, served_runners


def broker_settings(config: dict, instance_path: str) -> tuple[str, str]:
    """The broker and result backend URLs, with embedded defaults.

    With no CELERY_BROKER_URL, kombu's SQLAlchemy transport keeps the queue in a
    SQLite file, so development needs no broker service.
    """
    broker = config.get("CELERY_BROKER_URL")
    if not broker:
        broker = f"sqla+sqlite:///{Path(instance_path) / 'celery-broker.sqlite'}"
    backend = config.get("CELERY_RESULT_BACKEND")
    if not backend:
        if broker.startswith(("amqp://", "amqps://", "pyamqp://")):
            backend = "rpc://"
        else:
            backend = f"db+sqlite:///{Path(instance_path) / 'celery-results.sqlite'}"
    return broker, backend


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for ``app`` and store it in ``app.extensions``."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    broker, backend = broker_settings(app.config, app.instance_path)
    celery_app = Celery(app.name, task_cls=FlaskTask)
    settings = dict(
        broker_url=broker,
        result_backend=backend,
        broker_connection_retry_on_startup=True,
        task_default_queue=app.config["CELERY_QUEUE"],
        # A worker consumes the shared queue (dispatch, mail, reconcile...) and the
        # start queue of each runner it serves; starts are sent to their run's.
        task_queues=[
            Queue(app.config["CELERY_QUEUE"]),
            *(
                Queue(runner_queue(app.config, runner))
                for runner in served_runners(app.config)
            ),
        ],
        task_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        # The database row is the source of truth and the queue; the broker only
        # carries short tasks ("start N", "dispatch"), none of which waits for a
        # pipeline, so no delivery stays unacknowledged anywhere near RabbitMQ's
        # consumer_timeout.
        # - task_acks_late: acknowledged when the task ends, so a worker killed
        #   mid-task does not lose it (the tasks are idempotent);
        # - worker_prefetch_multiplier=1: a worker holds one message beyond what it
        #   runs;
        # - task_reject_on_worker_lost: a task whose process was killed is
        #   requeued rather than acknowledged as if it had finished.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_reject_on_worker_lost=True,
        beat_schedule={
            "reconcile-analyses": {
                "task": taskq.RECONCILE,
                "schedule": float(app.config["RECONCILE_SECONDS"]),
            },
            "check-pipeline-images": {
                "task": taskq.CHECK_IMAGES,
                "schedule": float(app.config["IMAGE_CHECK_SECONDS"]),
            },
            "dispatch-analyses": {
                "task": taskq.DISPATCH,
                "schedule": float(app.config["DISPATCH_SECONDS"]),
            },
            "flush-mail": {
                "task": taskq.FLUSH_MAIL,
                "schedule": float(app.config["MAIL_RETRY_SECONDS"]),
            },
            "forget-lapsed-limits": {
                "task": taskq.FORGET_LAPSED_LIMITS,
                "schedule": 600.0,
            },
            "expire-uploads": {
                "task": taskq.EXPIRE_UPLOADS,
                "schedule": 600.0,
            },
            "apply-retention": {
                "task": taskq.PURGE,
                "schedule": float(app.config["PURGE_SECONDS"]),
            },
        },
        beat_schedule_filename=str(Path(app.instance_path) / "celerybeat-schedule"),
    )
    # CELERY_EXTRA adds settings and may override any of the above.
    celery_app.conf.update({**settings, **app.config["CELERY_EXTRA"]})
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    celery_app.autodiscover_tasks(["frontend.worker"], related_name="tasks", force=True)
    return celery_app
