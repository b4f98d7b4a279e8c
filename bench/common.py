"""What the benchmarks share: an app on a scratch folder with one signed-in user."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import flask_migrate

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def broker_url(work: Path) -> str:
    """The local RabbitMQ when one answers, else the embedded broker."""
    try:
        with socket.create_connection(("127.0.0.1", 5672), 1):
            return AMQP
    except OSError:
        return f"sqla+sqlite:///{work / 'broker.sqlite'}"


def bench_config(work: Path, **overrides) -> dict:
    return {
        "SECRET_KEY": "bench",
        "SECURITY_PASSWORD_SALT": "bench",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'bench.sqlite'}",
        "USER_DATA_DIR": str(work / "userData"),
        "FAILED_ANALYSES_DIR": str(work / "failed"),
        "LOG_DIR": str(work / "logs"),
        "CELERY_BROKER_URL": f"sqla+sqlite:///{work / 'broker.sqlite'}",
        "CELERY_RESULT_BACKEND": "",
        "SECURITY_EMAIL_VALIDATOR_ARGS": {"check_deliverability": False},
        **overrides,
    }


def app_with_user(config: dict, projects: int = 1):
    """The app, migrated, with one user owning ``projects`` projects; returns the
    app, the user's id, the project ids and a test client signed in as the user."""
    from flask_security import hash_password

    from frontend import create_app
    from frontend.core.extensions import db
    from frontend.core.models import utcnow
    from frontend.core.security import security
    from frontend.projects.services import create_project

    app = create_app(config)
    with app.app_context():
        flask_migrate.upgrade()
        user = security.datastore.create_user(
            email="bench@example.org",
            password=hash_password("bench password"),
            confirmed_at=utcnow(),
            notify_by_email=False,
        )
        db.session.commit()
        ids = [create_project(user, f"project {n}").id for n in range(projects)]
        user_id, uniquifier = user.id, user.fs_uniquifier
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"], session["_fresh"] = uniquifier, True
    return app, user_id, ids, client


def targets(*checks: tuple[str, bool]) -> list[dict]:
    """Each target in words with whether this run met it, for the printed result."""
    return [{"target": text, "met": bool(ok)} for text, ok in checks]


def transfer_args(doc: str | None) -> argparse.Namespace:
    """The transfer benches' options: the file's size and how many times each
    side moves it."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()
