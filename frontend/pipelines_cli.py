"""`flask pipelines …`: list, check, prepare, build and test the pipelines of
backend/pipelines."""

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from backend.images import (
    ImageBuildError,
    NoBaseImage,
    build_pipeline_image,
    debootstrap_base_image,
    ensure_images,
)
from backend.manifest import discover as discover_in
from backend.runners import EngineUnavailable, docker_client, runner_class

pipelines_cli = AppGroup(
    "pipelines", help="List, check, prepare, build and test pipelines."
)


def discover():
    return discover_in(Path(current_app.config["PIPELINES_DIR"]))


def _docker_client():
    """A client for the engine DOCKER_HOST names, or None when none answers."""
    try:
        return docker_client(timeout=300)
    except EngineUnavailable:
        return None


def _named(names: tuple[str, ...]) -> dict:
    """Every pipeline, after refusing names that are none of them."""
    pipelines, _errors = discover()
    unknown = sorted(set(names) - set(pipelines))
    if unknown:
        raise click.UsageError(f"unknown pipeline(s): {', '.join(unknown)}")
    return pipelines


def _engine(refusal: str):
    """A client for the engine, or a ClickException saying ``refusal``."""
    client = _docker_client()
    if client is None:
        raise click.ClickException(f"No Docker engine answers: {refusal}")
    return client


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


NEEDS_ENGINE = """\
No Docker engine answers (DOCKER_HOST={host}), so no analysis could run, and
Labqueue was not started. Analyses run in Docker containers. Either:
  - start Docker (sudo dockerd &, or sudo systemctl start docker), then run this
    again; or,
  - on a development machine only, run them as plain processes WITHOUT a sandbox:
    LABQUEUE_RUNNER=local make run   (every page then says so)."""

NO_BASE = """\
Labqueue cannot get its pipeline images, so it was not started.
The pipelines build on {base}, which this Docker engine does not have and cannot
pull ({pull_error}); the stand-in, a local Debian base ({local_base}), cannot be
made here: {local_error}.
Do one of these, then run make run again:
  - sudo .venv/bin/python -m backend.images {local_base}
    (makes the local base with debootstrap, about two minutes, once; it touches
    nothing else in this folder);
  - make the registry reachable, or docker load / docker pull {base} yourself;
  - set LABQUEUE_PIPELINE_BASE_IMAGE to a Python image this engine has;
  - or, on a development machine only, LABQUEUE_RUNNER=local to run pipelines
    without a sandbox."""


@pipelines_cli.command("prepare")
def prepare_command() -> None:
    """Get every pipeline image ready for `make run`: build those missing or out of
    date (nothing when all are current), on the configured base or, with no
    registry, on a local Debian base made with debootstrap; then record which
    pipelines can run. Exits non-zero, with what to do, when analyses could not
    run."""
    import os

    from .worker.images import check_images

    config = current_app.config
    pipelines, errors = discover()
    for error in errors:
        click.echo(f"error: {error}", err=True)
    host = os.environ.get("DOCKER_HOST", "the default socket")
    images_needed = runner_class(config["RUNNER"]).containers
    client = _docker_client() if images_needed else None
    if not images_needed:
        click.echo(
            "WARNING: RUNNER is local: pipelines run as plain processes, WITHOUT a "
            "sandbox (every page says so). No images are needed.",
            err=True,
        )
    elif client is None:
        raise click.ClickException(NEEDS_ENGINE.format(host=host))
    else:
        try:
            built = ensure_images(
                client,
                pipelines.values(),
                config["PIPELINE_BASE_IMAGE"],
                click.echo,
                config["PIPELINE_LOCAL_BASE_IMAGE"],
            )
        except NoBaseImage as exc:
            raise click.ClickException(
                NO_BASE.format(
                    base=exc.base,
                    pull_error=exc.pull_error,
                    local_base=exc.local_base,
                    local_error=exc.local_error,
                )
            ) from exc
        except ImageBuildError as exc:
            message = f"A pipeline image failed to build: {exc}"
            raise click.ClickException(message) from exc
        finally:
            client.close()
        if not built:
            click.echo(f"Pipeline images are up to date ({len(pipelines)}).")
    found = check_images()
    missing = sorted(name for name, ready in found.items() if not ready)
    if missing:
        raise click.ClickException(f"images still missing: {', '.join(missing)}")


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
    help="First make PIPELINE_LOCAL_BASE_IMAGE with debootstrap (no registry needed).",
)
def build_command(names: tuple[str, ...], base_image: str | None, make_base: bool):
    """Build the images of the named pipelines (all when none are named), even
    when they are up to date."""
    from .worker.images import check_images

    pipelines = _named(names)
    client = _engine("nothing can be built.")
    configured = current_app.config["PIPELINE_BASE_IMAGE"]
    local_base = current_app.config["PIPELINE_LOCAL_BASE_IMAGE"]
    base = base_image or configured
    try:
        if make_base:
            click.echo(f"Making {local_base} with debootstrap (about 2 min)…")
            debootstrap_base_image(client, local_base, say=click.echo)
            base = local_base
        for name in names or list(pipelines):
            click.echo(f"Building {pipelines[name].image_tag} on {base}…")
            # Built on the stand-in for the configured base, it counts as current
            # for `prepare`; built on another base by request, it does not.
            meant_for = configured if make_base else base
            image_id = build_pipeline_image(client, pipelines[name], base, meant_for)
            click.echo(f"  {image_id}")
    except ImageBuildError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
    if _database_ready():
        check_images()
    else:  # built all the same; the workers check the images when they start
        click.echo(
            "Not recorded which pipelines can run: the database is not set up yet "
            "(flask --app frontend db upgrade)."
        )


def _database_ready() -> bool:
    """Whether the database has its tables (``flask db upgrade`` has run)."""
    import sqlalchemy as sa

    from .core.extensions import db

    return sa.inspect(db.engine).has_table("pipeline_image")


@pipelines_cli.command("test")
@click.argument("names", nargs=-1)
def test_command(names: tuple[str, ...]) -> None:
    """Run the pipelines' own tests (tests/cases.toml in each folder; all
    pipelines when none are named) in their images, as analyses run, and report
    each mismatch. The images must be built (`flask pipelines build`)."""
    from backend.pipeline_tests import load_cases, run_cases
    from backend.runners import DockerRunner

    pipelines = _named(names)
    client = _engine("nothing can run.")

    def say(result) -> None:
        verdict = "ok" if result.passed else "FAILED"
        click.echo(
            f"{result.pipeline}: {result.name} ... {verdict} ({result.seconds:.1f} s)"
        )
        for problem in result.problems:
            click.echo(f"  {problem}")

    runner = DockerRunner(client)
    results, untested = [], []
    try:
        for name in names or list(pipelines):
            pipeline = pipelines[name]
            try:
                if not load_cases(pipeline):
                    untested.append(name)
                    continue
            except ValueError as exc:
                raise click.ClickException(str(exc)) from exc
            problem = runner.image_problem(pipeline.image_tag)
            if problem:
                raise click.ClickException(
                    f"{name}: {problem} (build it: flask pipelines build {name})"
                )
            results += run_cases(pipeline, runner, say)
    finally:
        runner.close()
    failed = [r for r in results if not r.passed]
    tested = len({r.pipeline for r in results})
    summary = f"{tested} pipeline(s), {len(results)} case(s)"
    if untested:
        click.echo(f"No tests/cases.toml: {', '.join(untested)}")
    if failed:
        raise click.ClickException(f"{summary}: {len(failed)} failed")
    click.echo(f"{summary}: all passed")
