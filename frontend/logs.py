"""Logging: rotating files in LOG_DIR (or standard error, in containers), and
errors mailed to ADMINS."""

import logging
import sys
from logging.handlers import RotatingFileHandler, SMTPHandler
from pathlib import Path

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"


def _replace_handlers(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    # Creating the app twice in one process (tests, CLI) must not stack handlers.
    for old in [h for h in logger.handlers if getattr(h, "_labqueue", False)]:
        logger.removeHandler(old)
        old.close()
    for handler in handlers:
        handler._labqueue = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def build_handlers(
    app: Flask, filename: str, stderr_taken: bool = False
) -> list[logging.Handler]:
    """The handlers for one process: a rotating file (or standard error, with
    LOG_TO_STDERR: one stream per process, which no other process rotates), plus
    mail to admins. ``stderr_taken``: the process logs to standard error already
    (Celery does), so LOG_TO_STDERR adds no second copy."""
    config = app.config
    handlers: list[logging.Handler] = []
    if config["LOG_TO_STDERR"]:
        stream: logging.Handler | None = (
            None if stderr_taken else logging.StreamHandler(sys.stderr)
        )
    else:
        stream = RotatingFileHandler(
            Path(config["LOG_DIR"]) / filename,
            maxBytes=config["LOG_MAX_BYTES"],
            backupCount=config["LOG_BACKUP_COUNT"],
            encoding="utf-8",
        )
    if stream is not None:
        stream.setFormatter(logging.Formatter(FORMAT))
        handlers.append(stream)

    if config.get("MAIL_SERVER") and config.get("ADMINS"):
        credentials = None
        if config.get("MAIL_USERNAME"):
            credentials = (config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        mail_handler = SMTPHandler(
            mailhost=(config["MAIL_SERVER"], config["MAIL_PORT"]),
            fromaddr=config.get("SECURITY_EMAIL_SENDER")
            or config["MAIL_DEFAULT_SENDER"],
            toaddrs=config["ADMINS"],
            subject=f"{config['APP_NAME']} error",
            credentials=credentials,
            secure=() if config.get("MAIL_USE_TLS") else None,
            timeout=config["MAIL_TIMEOUT"],
        )
        mail_handler.setLevel(logging.ERROR)
        mail_handler.setFormatter(logging.Formatter(FORMAT))
        handlers.append(mail_handler)
    return handlers


def configure_logging(app: Flask, stderr_taken: bool = False) -> None:
    """Send this process's log records to ``LOG_DIR/LOG_FILE_NAME`` or standard
    error (and errors to admins). Handlers go on the root logger so that library
    records land there too."""
    if app.config.get("TESTING") and not app.config.get("LOG_TO_FILE"):
        return
    root = logging.getLogger()
    root.setLevel(app.config["LOG_LEVEL"])
    app.logger.setLevel(app.config["LOG_LEVEL"])
    handlers = build_handlers(app, app.config["LOG_FILE_NAME"], stderr_taken)
    _replace_handlers(root, handlers)


def remove_handlers() -> None:
    """Detach and close the handlers configure_logging installed."""
    _replace_handlers(logging.getLogger(), [])
