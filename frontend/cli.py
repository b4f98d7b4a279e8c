"""Command-line tools, run as ``flask --app frontend <command>``."""

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .accounts.services import create_admin


def register_cli(app: Flask) -> None:
    from .devserver import dev_command
    from .pipelines_cli import pipelines_cli

    app.cli.add_command(dev_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(worker_ping_command)
    app.cli.add_command(pipelines_cli)


@click.command("create-admin")
@with_appcontext
@click.option("--email", help="Address of the admin (default: ADMIN_EMAIL).")
@click.option(
    "--password",
    help="Password (default: ADMIN_PASSWORD, else one is generated and printed).",
)
def create_admin_command(email: str | None, password: str | None) -> None:
    """Create a confirmed admin account, or give an existing account the admin role."""
    email = email or current_app.config.get("ADMIN_EMAIL")
    password = password or current_app.config.get("ADMIN_PASSWORD")
    if not email:
        raise click.UsageError("Give --email, or set ADMIN_EMAIL in config.py.")
    if password and len(password) < current_app.config["SECURITY_PASSWORD_LENGTH_MIN"]:
        raise click.UsageError("The password is shorter than the minimum length.")
    user, generated = create_admin(email, password)
    click.echo(f"Admin account: {user.email}")
    if generated:
        click.echo(f"Generated password (shown once): {generated}")


@click.command("worker-ping")
@with_appcontext
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
def worker_ping_command(timeout: float) -> None:
    """Send a task through the broker and wait for a worker to answer it."""
    from .tasks import ping

    try:
        answer = ping.delay().get(timeout=timeout)
    except Exception as exc:  # any broker or timeout error means "no answer"
        message = f"No worker answered within {timeout}s: {exc}"
        raise click.ClickException(message) from exc
    click.echo(f"Worker {answer['hostname']} answered at {answer['time']} UTC.")
