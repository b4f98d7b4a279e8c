"""`flask pipelines …`: list, check and build the pipelines of backend/pipelines."""

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from backend.images import (
    LOCAL_BASE_IMAGE,
    ImageBuildError,
    build_pipeline_image,
    debootstrap_base_image,
)
from backend.manifest import discover as discover_in

pipelines_cli = AppGroup("pipelines", help="List, check and build pipelines.")


def discover():
    return discover_in(Path(current_app.config["PIPELINES_DIR"]))


@pipelines_cli.command("list")
def list_command() -> None:
    """List the pipelines with their version, image and resources."""
    pipelines, errors = discover()
    for pipeline in pipelines.values():
        r = pipeline.resources
        click.echo(
            f"{pipeline.name:<20} {pipeline.version:<8} {pipeline.image_tag:<36} "
            f"{r.cpus:g} CPU, {r.memory_mb} MiB, {r.timeout_minutes} min"
        )
    for error in errors:
        click.echo(f"error: {error}", err=True)


@pipelines_cli.command("check")
def check_command() -> None:
    """Validate every manifest; report each problem with its file and field."""
    pipelines, errors = discover()
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        raise click.ClickException(f"{len(errors)} pipeline(s) have errors")
    click.echo(f"{len(pipelines)} pipeline(s) OK: {', '.join(pipelines)}")


@pipelines_cli.command("build")
@click.argument("names", nargs=-1)
@click.option(
    "--base-image",
    default=None,
    help="Image the Dockerfiles build on (default: PIPELINE_BASE_IMAGE).",
)
@click.option(
    "--make-base",
    is_flag=True,
    help=f"First make {LOCAL_BASE_IMAGE} with debootstrap (no registry needed).",
)
def build_command(names: tuple[str, ...], base_image: str | None, make_base: bool):
    """Build the images of the named pipelines (all when none are named)."""
    import docker

    pipelines, errors = discover()
    unknown = sorted(set(names) - set(pipelines))
    if unknown:
        raise click.UsageError(f"unknown pipeline(s): {', '.join(unknown)}")
    client = docker.from_env()
    base = base_image or current_app.config["PIPELINE_BASE_IMAGE"]
    try:
        if make_base:
            click.echo(f"Making {LOCAL_BASE_IMAGE} with debootstrap…")
            debootstrap_base_image(client, LOCAL_BASE_IMAGE)
            base = LOCAL_BASE_IMAGE
        for name in names or list(pipelines):
            click.echo(f"Building {pipelines[name].image_tag} on {base}…")
            image_id = build_pipeline_image(client, pipelines[name], base)
            click.echo(f"  {image_id}")
    except ImageBuildError as exc:
        raise click.ClickException(str(exc)) from exc
