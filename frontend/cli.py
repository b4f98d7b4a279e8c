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
    app.cli.add_command(tokens_cli)
    app.cli.add_command(tes_cli)
    app.cli.add_command(purge_command)


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
    from .worker.tasks import ping

    try:
        answer = ping.delay().get(timeout=timeout)
    except Exception as exc:  # any broker or timeout error means "no answer"
        message = f"No worker answered within {timeout}s: {exc}"
        raise click.ClickException(message) from exc
    click.echo(f"Worker {answer['hostname']} answered at {answer['time']} UTC.")


@click.group("tokens")
def tokens_cli() -> None:
    """Personal API tokens (for scripts and tests)."""


def _user_by_email(email: str):
    from .core.security import security

    user = security.datastore.find_user(case_insensitive=True, email=email)
    if user is None:
        raise click.UsageError(f"There is no account for {email}.")
    return user


@tokens_cli.command("create")
@with_appcontext
@click.option("--email", required=True, help="The account the token acts for.")
@click.option("--name", required=True, help="What the token is for.")
@click.option(
    "--read-only", is_flag=True, help="Reads only: no uploads, runs, deletes."
)
@click.option(
    "--days", type=int, default=None, help="Lifetime (default API_TOKEN_DAYS; 0: none)."
)
def create_token_command(email: str, name: str, read_only: bool, days) -> None:
    """Make a token and print it (only this once: it is stored as a digest)."""
    from .api.tokens import TokenRefused, create

    try:
        _token, secret = create(_user_by_email(email), name, days, read_only)
    except TokenRefused as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(secret)


@tokens_cli.command("list")
@with_appcontext
@click.option("--email", required=True)
def list_tokens_command(email: str) -> None:
    """An account's tokens not revoked: id, state, start, name."""
    from .api.tokens import live_tokens, state_of

    for token in live_tokens(_user_by_email(email)):
        scope = "read-only" if token.read_only else "read-write"
        click.echo(
            f"{token.id}\t{state_of(token)}\t{scope}\t{token.prefix}…\t{token.name}"
        )


@tokens_cli.command("revoke")
@with_appcontext
@click.option("--email", required=True)
@click.argument("token_id", type=int)
def revoke_token_command(email: str, token_id: int) -> None:
    """Revoke one of an account's tokens by its id (see ``tokens list``)."""
    from .api.tokens import live_tokens, revoke

    token = next(
        (t for t in live_tokens(_user_by_email(email)) if t.id == token_id), None
    )
    if token is None:
        raise click.UsageError(f"{email} has no live token {token_id}.")
    revoke(token, "from the command line")
    click.echo(f"Token {token.prefix}… revoked.")


@click.group("tes")
def tes_cli() -> None:
    """GA4GH TES: the images tasks may run."""


@tes_cli.command("allow-image")
@with_appcontext
@click.argument("image")
@click.option("--note", default="", help="Why it is allowed, for the other admins.")
def allow_image_command(image: str, note: str) -> None:
    """Let TES tasks run IMAGE (the registered pipelines' images are allowed)."""
    from .tes.services import allow_image

    click.echo(f"TES tasks may run {allow_image(image, note).image}.")


@tes_cli.command("images")
@with_appcontext
def images_command() -> None:
    """The images TES tasks may run."""
    from .tes.services import allowed_images

    for image in sorted(allowed_images()):
        click.echo(image)


@click.command("purge")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@click.option(
    "--as-of",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="Apply the policy as on this day (UTC), to see what is coming.",
)
def purge_command(dry_run: bool, as_of) -> None:
    """Apply the retention policy: warn owners, delete what was warned about and
    is due, remove old failed-run snapshots (the beat does this every
    PURGE_SECONDS)."""
    from . import retention
    from .core.models import utcnow

    config = current_app.config
    days = {kind: config[key] for kind, key in retention.SETTINGS.items()}
    if not any(days.values()) and not config["RETENTION_FAILED_SNAPSHOT_DAYS"]:
        click.echo(
            "No retention policy is set (every RETENTION_*_DAYS is 0): only guest "
            "accounts whose time is over are removed."
        )
    report = retention.purge(as_of or utcnow(), dry_run=dry_run)
    lines = report.lines(dry_run=dry_run)
    for line in lines or ["Nothing to do."]:
        click.echo(line)
