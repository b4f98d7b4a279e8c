"""Labqueue's web app: the application factory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask_security import SQLAlchemyUserDatastore

from backend.runners import format_duration

from . import accounts, analyses, main, projects, sharing
from .accounts.forms import (
    AcademicRegisterForm,
    QueuedForgotPasswordForm,
    QueuedSendConfirmationForm,
)
from .admin import init_admin
from .analyses.kind import PipelineRun
from .api import init_api
from .api.uploads import web_bp as web_uploads
from .celery_app import celery_init_app
from .cli import register_cli
from .core import kinds, limits, settings
from .core.extensions import csrf, db, mail, migrate
from .core.formatting import human_size
from .core.http import init_http, trusted_hosts
from .core.models import Role, User
from .core.security import security
from .core.settings import PROJECT_ROOT, Defaults
from .errors import register_error_handlers
from .headers import init_headers
from .logs import configure_logging
from .tes.kind import TesTaskRun


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then config.py, then LABQUEUE_* variables, then
    ``config`` (used by tests and the worker entry point)."""
    app = Flask(__name__, instance_path=str(PROJECT_ROOT / "instance"))
    app.config.from_object(Defaults)
    default_file = PROJECT_ROOT / "config.py"
    config_file = Path(os.environ.get("LABQUEUE_CONFIG_FILE", default_file))
    if config_file.is_file():
        app.config.from_pyfile(str(config_file))
    app.config.from_prefixed_env("LABQUEUE")
    app.config.update(config or {})
    settings.check(app.config)
    _complete_config(app)
    init_http(app)

    db.init_app(app)
    # Batch mode lets Alembic alter tables on SQLite (it copies the table).
    migrate_dir = str(Path(__file__).parent / "migrations")
    migrate.init_app(app, db, directory=migrate_dir, render_as_batch=True)
    mail.init_app(app)
    csrf.init_app(app)

    security.init_app(
        app,
        SQLAlchemyUserDatastore(db, User, Role),
        register_form=AcademicRegisterForm,
        forgot_password_form=QueuedForgotPasswordForm,
        send_confirmation_form=QueuedSendConfirmationForm,
    )
    limits.init_app(app)

    app.register_blueprint(main.bp)
    app.register_blueprint(accounts.bp)
    app.register_blueprint(projects.bp)
    app.register_blueprint(analyses.bp)
    app.register_blueprint(sharing.bp)
    app.register_blueprint(web_uploads)
    init_api(app)
    init_headers(app, init_admin(app))

    # The kinds of run, in the order they are asked which an analysis is.
    app.extensions[kinds.EXTENSION] = (TesTaskRun(), PipelineRun())
    celery_init_app(app)
    register_error_handlers(app)
    register_cli(app)
    configure_logging(app)

    app.add_template_filter(human_size)
    app.add_template_filter(format_duration, "duration")

    @app.context_processor
    def inject_app_name() -> dict[str, Any]:
        return {"app_name": app.config["APP_NAME"]}

    return app


def _complete_config(app: Flask) -> None:
    """Fill in defaults that depend on paths, and create the folders they name."""
    config = app.config
    instance = Path(app.instance_path)
    # Secrets, the SQLite database and the embedded broker live here: owner only.
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    instance.chmod(0o700)
    folders = ["USER_DATA_DIR", "FAILED_ANALYSES_DIR"]
    if not config["LOG_TO_STDERR"]:
        folders.append("LOG_DIR")
    for key in folders:
        _writable_folder(key, Path(config[key]))

    if not config.get("SQLALCHEMY_DATABASE_URI"):
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{instance / 'labqueue.sqlite'}"
    url = config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:///") and ":memory:" not in url:
        # Created here so that it is private from the start (SQLite gives its -wal
        # and -shm files the mode of the database).
        database = Path(url.removeprefix("sqlite:///").split("?")[0])
        database.parent.mkdir(parents=True, exist_ok=True)
        database.touch(mode=0o600, exist_ok=True)
    if config.get("TRUSTED_HOSTS"):
        # Flask checks the list too, after SiteOnly made every request the site's.
        config["TRUSTED_HOSTS"] = trusted_hosts(config)
    # Links, cookies and HSTS follow the site's scheme: over HTTPS, cookies are
    # only sent over HTTPS; the one-year remember cookie follows the session one.
    https = config["SITE_URL"].startswith("https:")
    if https:
        config["PREFERRED_URL_SCHEME"] = "https"
    if config.get("SESSION_COOKIE_SECURE") is None:
        config["SESSION_COOKIE_SECURE"] = https
    if config.get("REMEMBER_COOKIE_SECURE") is None:
        config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]
    for key in ("SECRET_KEY", "SECURITY_PASSWORD_SALT"):
        if not config.get(key):
            config[key] = _persisted_secret(instance / key.lower())
    if not config.get("SECURITY_TOTP_SECRETS"):
        secret = _persisted_secret(instance / "security_totp_secret")
        config["SECURITY_TOTP_SECRETS"] = {"1": secret}
    config["SECURITY_TOTP_ISSUER"] = (
        config["SECURITY_TOTP_ISSUER"] or config["APP_NAME"]
    )
    # "Lost your phone? Ask the administrators": Flask-Security mails them here.
    helpers = config.get("ACCESS_REQUEST_CONTACT") or next(iter(config["ADMINS"]), None)
    if helpers and not config.get("SECURITY_TWO_FACTOR_RESCUE_MAIL"):
        config["SECURITY_TWO_FACTOR_RESCUE_MAIL"] = helpers

    if config.get("MAIL_SERVER"):
        config.setdefault("MAIL_BACKEND", "smtp")
    elif not config.get("MAIL_BACKEND"):
        # No mail server: write each message to a file a developer can open.
        config["MAIL_BACKEND"] = "file"
        config["MAIL_FILE_PATH"] = str(Path(config["LOG_DIR"]) / "mail")
        Path(config["MAIL_FILE_PATH"]).mkdir(parents=True, exist_ok=True)
    config.setdefault("SECURITY_EMAIL_SENDER", config["MAIL_DEFAULT_SENDER"])
    if not config.get("PIPELINE_USER"):
        # Containers never run as root: as the worker's user, or as nobody.
        uid, gid = os.getuid(), os.getgid()
        config["PIPELINE_USER"] = f"{uid}:{gid}" if uid != 0 else "65534:65534"
    name = config["APP_NAME"]
    config.setdefault("SECURITY_EMAIL_SUBJECT_REGISTER", f"Confirm your {name} account")
    config.setdefault(
        "SECURITY_EMAIL_SUBJECT_CONFIRM", f"Confirm your email for {name}"
    )
    config.setdefault(
        "SECURITY_EMAIL_SUBJECT_PASSWORD_RESET", f"Reset your {name} password"
    )


def _writable_folder(key: str, folder: Path) -> None:
    """Make ``folder`` if need be, and stop start-up, saying how to mend it, if
    this process cannot write there (a volume the engine made as root, say)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise settings.ConfigError(
            f"{key} ({folder}) cannot be made: {exc.strerror}. Make it, writable by "
            f"user {os.getuid()}, or set {key} to a folder that is."
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        owner = folder.stat()
        raise settings.ConfigError(
            f"{key} ({folder}) is not writable by this process (user {os.getuid()}; "
            f"the folder belongs to {owner.st_uid}:{owner.st_gid}). Give it to this "
            f"user (chown {os.getuid()}:{os.getgid()} {folder}); with Docker Compose, "
            "the prepare service does: docker-compose up prepare."
        )


def _persisted_secret(path: Path) -> str:
    """A random secret kept in the instance folder, so sessions survive restarts."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(value)
    return value
