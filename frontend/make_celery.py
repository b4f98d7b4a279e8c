"""Worker entry point: ``celery -A frontend.make_celery worker``."""

from celery.signals import after_setup_logger, worker_ready
from flask.logging import default_handler

from . import create_app
from .logs import configure_logging

flask_app = create_app({"LOG_FILE_NAME": "worker.log"})
celery_app = flask_app.extensions["celery"]
# Celery logs to the console itself; Flask's console handler would print twice.
flask_app.logger.removeHandler(default_handler)


@after_setup_logger.connect
def log_to_file(logger, **kwargs):
    """Celery resets the root logger at start; put the worker.log handlers back."""
    configure_logging(flask_app)


@worker_ready.connect
def announce_ready(sender, **kwargs):
    """Say in the log, plainly, that the worker is consuming."""
    broker = celery_app.conf.broker_url
    with flask_app.app_context():
        # Runs a dead worker left behind are repaired before new work starts.
        from .analyses.execution import reconcile

        reconcile()
    flask_app.logger.info(
        "Worker %s ready, consuming from %s", sender.hostname, broker.split("@")[-1]
    )
