"""Shared fixtures: an app on a migrated SQLite file, a real SMTP server, builders."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_security import hash_password
from werkzeug.serving import make_server

from frontend import create_app
from frontend.core import outbox
from frontend.core.extensions import db
from frontend.core.models import User, utcnow
from frontend.core.security import security
from tests.images import BUSYBOX_IMAGE
from tests.smtp import SMTPServer

PASSWORD = "correct horse battery"

TEST_PIPELINES = Path(__file__).parent / "pipelines"


def base_config(tmp_path: Path, smtp: SMTPServer) -> dict:
    """Configuration for an app whose every file lives under ``tmp_path``."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SECURITY_PASSWORD_SALT": "test-salt",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'labqueue.sqlite'}",
        "USER_DATA_DIR": str(tmp_path / "userData"),
        "FAILED_ANALYSES_DIR": str(tmp_path / "failedAnalyses"),
        "LOG_DIR": str(tmp_path / "logs"),
        "CELERY_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        "CELERY_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        "MAIL_SERVER": smtp.host,
        "MAIL_PORT": smtp.port,
        "SECURITY_EMAIL_VALIDATOR_ARGS": {"check_deliverability": False},
        "ADMINS": ["admins@example.org"],
    }


@pytest.fixture(scope="session")
def smtp() -> Iterator[SMTPServer]:
    """A real SMTP server (aiosmtpd) on loopback, collecting what it receives."""
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """The test's database: a SQLite file, or a fresh PostgreSQL database when the
    test is parametrized with "postgresql" (indirect) or LABQUEUE_TEST_DB says so
    for the whole suite."""
    kind = getattr(request, "param", os.environ.get("LABQUEUE_TEST_DB", "sqlite"))
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'labqueue.sqlite'}"
        return
    import sqlalchemy as sa

    from tests.services import require_postgres

    server = sa.create_engine(require_postgres(), isolation_level="AUTOCOMMIT")
    name = f"labqueue_test_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()


def sending_outbox(app: Flask, smtp: SMTPServer):
    """Have ``smtp`` send ``app``'s outbox whenever a test looks for mail: the
    work a worker's mail task does, for tests that run no worker."""

    def send() -> None:
        with app.app_context():
            outbox.flush()

    smtp.senders.append(send)
    return send


@pytest.fixture
def app_config(tmp_path: Path, smtp: SMTPServer, database_url: str) -> dict:
    return {**base_config(tmp_path, smtp), "SQLALCHEMY_DATABASE_URI": database_url}


@pytest.fixture
def app(app_config: dict, smtp: SMTPServer) -> Iterator[Flask]:
    smtp.clear()
    app = create_app(app_config)
    with app.app_context():
        flask_migrate.upgrade()
    send = sending_outbox(app, smtp)
    yield app
    smtp.senders.remove(send)
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def start_worker(app: Flask, app_config: dict):
    """Start a real Celery worker for ``app`` (over its embedded broker), with the
    app's settings and any given."""
    from tests.workers import Worker

    workers = []

    def start(**settings) -> Worker:
        worker = Worker({**app_config, **settings})
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
    if workers:
        from frontend.core.runners import site_id
        from tests.services import remove_site_containers

        with app.app_context():
            remove_site_containers(site_id())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app: Flask):
    """Build a user: confirmed, with the test password, and any roles given."""

    def make(
        email: str = "ada@cs.ox.ac.uk",
        password: str = PASSWORD,
        confirmed: bool = True,
        roles: tuple[str, ...] = (),
        **fields,
    ) -> int:
        with app.app_context():
            datastore = security.datastore
            fields.setdefault("first_name", "Ada")
            fields.setdefault("last_name", "Lovelace")
            user = datastore.create_user(
                email=email,
                password=hash_password(password),
                confirmed_at=utcnow() if confirmed else None,
                **fields,
            )
            for name in roles:
                datastore.add_role_to_user(user, datastore.find_or_create_role(name))
            db.session.commit()
            return user.id

    return make


def csrf_token(html: str) -> str:
    match = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


class Auth:
    """Logs a test client in and out through the real forms."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def login(self, email: str = "ada@cs.ox.ac.uk", password: str = PASSWORD):
        token = csrf_token(self.client.get("/login").text)
        return self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )

    def logout(self):
        token = csrf_token(self.client.get("/").text)
        return self.client.post("/logout", data={"csrf_token": token})


def admin_action(client: FlaskClient, view: str, action: str, *ids: int):
    """Run a Flask-Admin bulk action (as its list page's form sends it) on rows
    ``ids`` of ``view`` ("admin_users", "admin_analyses", ...)."""
    token = csrf_token(client.get(f"/admin/{view}/").text)
    return client.post(
        f"/admin/{view}/action/",
        data={"action": action, "rowid": [str(i) for i in ids], "csrf_token": token},
    )


@pytest.fixture
def auth(client: FlaskClient) -> Auth:
    return Auth(client)


def get_user(app: Flask, email: str) -> User | None:
    with app.app_context():
        user = security.datastore.find_user(email=email)
        if user is not None:
            db.session.expunge(user)
        return user


class LiveServer:
    """The app served over real HTTP on loopback, in a thread of the test process."""

    def __init__(self, app: Flask):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        # Mail links are built from SITE_URL: they must lead here.
        self.app.config["SITE_URL"] = self.url
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def make_project(app: Flask):
    """Build a project for a user id; returns the project id."""

    def make(owner_id: int, name: str = "RNA-seq", description: str = "") -> int:
        from frontend.core.models import Project

        with app.app_context():
            from frontend.core.layout import files_dir

            owner = db.session.get(User, owner_id)
            project = Project(owner=owner, name=name, description=description)
            db.session.add(project)
            db.session.commit()
            files_dir(project).mkdir(parents=True, exist_ok=True)
            return project.id

    return make


def upload(client: FlaskClient, project_id: int, path: str, data: bytes, **params):
    """Send one file the way the upload page does: raw body, CSRF header."""
    token = csrf_token(client.get(f"/projects/{project_id}").text)
    return client.post(
        f"/projects/{project_id}/upload",
        query_string={"path": path, **params},
        data=data,
        headers={
            "X-CSRFToken": token,
            "Accept": "application/json",
            "Content-Type": "application/octet-stream",
        },
    )


@pytest.fixture(scope="session")
def docker_client():
    """A Docker client, with a tiny busybox image built for runner tests."""
    from tests.images import build_busybox_image
    from tests.services import require_docker

    client = require_docker()
    try:
        build_busybox_image(client, BUSYBOX_IMAGE)
    except RuntimeError as exc:
        pytest.fail(f"cannot build the test image: {exc}")
    return client


@pytest.fixture(scope="session")
def images(docker_client):
    """Every pipeline's image: the reference ones on the local debootstrap base
    (made on first use, about 90 s), the test ones on busybox."""
    from backend.images import (
        LOCAL_BASE_IMAGE,
        ImageBuildError,
        build_pipeline_image,
        debootstrap_base_image,
    )
    from backend.manifest import discover
    from tests.services import unavailable

    try:
        docker_client.images.get(LOCAL_BASE_IMAGE)
    except Exception:  # not made on this machine yet
        try:
            debootstrap_base_image(docker_client, LOCAL_BASE_IMAGE)
        except (ImageBuildError, OSError) as exc:
            unavailable(
                f"cannot make {LOCAL_BASE_IMAGE} (needs root and "
                f"debootstrap; or run `make pipeline-images`): {exc}"
            )
    for root, base in ((None, LOCAL_BASE_IMAGE), (TEST_PIPELINES, BUSYBOX_IMAGE)):
        pipelines, errors = discover(root) if root else discover()
        assert errors == []
        for pipeline in pipelines.values():
            build_pipeline_image(docker_client, pipeline, base)
    return docker_client


def make_analysis(app: Flask, project: int, **fields) -> int:
    """Add an analysis row of ``project``'s owner (seq-qc unless ``fields`` say
    otherwise); returns its id."""
    from frontend.core.models import Analysis, Project

    with app.app_context():
        owner = db.session.get(Project, project).owner_id
        analysis = Analysis(
            **{
                "owner_id": owner,
                "project_id": project,
                "pipeline": "seq-qc",
                "pipeline_version": "1.0.0",
                "image": "labqueue/seq-qc:2.1.0",
                "params": {},
                **fields,
            }
        )
        db.session.add(analysis)
        db.session.commit()
        return analysis.id
