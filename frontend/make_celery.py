"""Worker entry point: ``celery -A frontend.make_celery worker``.

Besides running tasks, each worker's main process runs the watcher (one per host
supervises that host's runs; see worker/watcher.py).
"""

import os
import warnings

from celery.exceptions import SecurityWarning
from celery.signals import (
    after_setup_logger,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from flask.logging import default_handler

from . import create_app
from .core.extensions import db
from .logs import configure_logging

flask_app = create_app({"LOG_FILE_NAME": "worker.log"})
celery_app = flask_app.extensions["celery"]
# Celery logs to the console itself; Flask's console handler would print twice.
flask_app.logger.removeHandler(default_handler)
watcher = None

RUNS_AS_ROOT = os.geteuid() == 0
if RUNS_AS_ROOT:
    # Celery's own warning is a screenful at every start; the ready message below
    # says once, in a line, why this worker keeps root and what still protects it.
    warnings.filterwarnings("ignore", category=SecurityWarning)


@after_setup_logger.connect
def log_to_file(logger, **kwargs):
    """Celery resets the root logger at start; put the worker.log handlers back
    (with LOG_TO_STDERR, Celery's own console handler is the stream)."""
    configure_logging(flask_app, stderr_taken=True)


@worker_process_init.connect
def fresh_connections(**kwargs):
    """A pool process forked from the main one must not share its database
    connections (the watcher uses them)."""
    with flask_app.app_context():
        db.engine.dispose(close=False)


@worker_ready.connect
def announce_ready(sender, **kwargs):
    """Repair what dead workers left, check pipeline images, start the watcher,
    then say plainly that the worker is consuming."""
    global watcher
    broker = celery_app.conf.broker_url
    with flask_app.app_context():
        from .core.runners import runs_unsandboxed
        from .worker.images import check_images
        from .worker.recovery import reconcile
        from .worker.watcher import Watcher

        reconcile()
        check_images()
        sandboxed = not runs_unsandboxed()
        watcher = Watcher(flask_app)
        watcher.start()
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


@worker_shutdown.connect
def stop_watching(**kwargs):
    """Stop the watcher; the runs go on, and the next watcher on this host picks
    them up."""
    if watcher is not None:
        watcher.stop()
