"""Worker entry point: ``celery -A frontend.make_celery worker``."""

import os
import warnings

from celery.exceptions import SecurityWarning
from celery.signals import after_setup_logger, worker_ready
from flask.logging import default_handler

from . import create_app
from .logs import configure_logging

flask_app = create_app({"LOG_FILE_NAME": "worker.log"})
celery_app = flask_app.extensions["celery"]
# Celery logs to the console itself; Flask's console handler would print twice.
flask_app.logger.removeHandler(default_handler)

RUNS_AS_ROOT = os.geteuid() == 0
if RUNS_AS_ROOT:
    # Celery's own warning is a screenful at every start; the ready message below
    # says once, in a line, why this worker keeps root and what still protects it.
    warnings.filterwarnings("ignore", category=SecurityWarning)


@after_setup_logger.connect
def log_to_file(logger, **kwargs):
    """Celery resets the root logger at start; put the worker.log handlers back."""
    configure_logging(flask_app)


@worker_ready.connect
def announce_ready(sender, **kwargs):
    """Repair what dead workers left, check pipeline images, then say plainly
    that the worker is consuming."""
    broker = celery_app.conf.broker_url
    with flask_app.app_context():
        from .analyses.execution import check_images, make_runner, reconcile

        reconcile()
        check_images()
        sandboxed = make_runner().sandboxed
    if RUNS_AS_ROOT:
        flask_app.logger.warning(
            "This worker runs as root because it was started as root; it keeps root "
            "to reach the Docker engine and the files the web app writes. %s In "
            "production, run workers as an unprivileged user in the docker group "
            "(docker-compose.yml does).",
            f"Pipelines still run in containers as user "
            f"{flask_app.config['PIPELINE_USER']} with no capabilities."
            if sandboxed
            else "Pipelines run as root too: the local runner has no sandbox.",
        )
    flask_app.logger.info(
        "Worker %s ready, consuming from %s", sender.hostname, broker.split("@")[-1]
    )
