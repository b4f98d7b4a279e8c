"""The pipelines this site has: those on disk, those admins switched off, and
whether each can run as the workers last found (its image there or not), which
the workers record with ``note_image``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from backend.manifest import Pipeline, discover
from backend.runners import now

from .extensions import db
from .models import PipelineImage, PipelineSetting
from .runners import host_id, runs_unsandboxed

log = logging.getLogger(__name__)


def all_pipelines() -> dict[str, Pipeline]:
    """Every valid pipeline on disk (errors are reported by `flask pipelines check`)."""
    pipelines, _errors = discover(Path(current_app.config["PIPELINES_DIR"]))
    return pipelines


def disabled_pipelines() -> set[str]:
    return set(
        db.session.scalars(
            sa.select(PipelineSetting.name).where(~PipelineSetting.enabled)
        )
    )


def enabled_pipelines() -> dict[str, Pipeline]:
    """The pipelines users are offered: all of them but those admins switched off."""
    off = disabled_pipelines()
    return {name: p for name, p in all_pipelines().items() if name not in off}


@dataclass(frozen=True)
class Availability:
    """Whether a pipeline can run, as the workers last found; ``problem`` and
    ``checked_at`` are for admins."""

    ready: bool
    problem: str | None = None
    checked_at: object = None

    def message(self, pipeline: Pipeline) -> str:
        """What a researcher is told when it cannot run."""
        return (
            f"{pipeline.title} cannot run at the moment: it is not installed on the "
            "server. The administrators have been told; please try again later."
        )


def availability(pipelines: dict[str, Pipeline]) -> dict[str, Availability]:
    """For each of ``pipelines``: can it run? A pipeline no worker has checked yet
    (or checked at another version) counts as ready: the worker checks again
    before launching."""
    rows = db.session.scalars(
        sa.select(PipelineImage).where(PipelineImage.pipeline.in_(list(pipelines)))
    )
    found = {
        row.pipeline: Availability(row.ready, row.problem, row.checked_at)
        for row in rows
        if row.image == pipelines[row.pipeline].image_tag
    }
    return {name: found.get(name, Availability(True)) for name in pipelines}


def unsandboxed() -> bool:
    """Whether analyses run without a sandbox here: the local runner is configured
    here, or by the last worker to report."""
    if runs_unsandboxed():
        return True
    try:
        latest = db.session.scalar(
            sa.select(PipelineImage.runner).order_by(PipelineImage.checked_at.desc())
        )
    except sa.exc.SQLAlchemyError:  # an error page with the database down
        db.session.rollback()
        return False
    return latest is not None and runs_unsandboxed(latest)


def note_image(
    pipeline: str, image: str, runner, problem: str | None, fix: str | None = None
) -> None:
    """Record what this worker found about ``pipeline``'s image. Admins hear (an
    ERROR, mailed to ADMINS) when an image goes missing, not at every check. The
    problem ends with its mend: ``fix``, or else building the image."""
    row = db.session.get(PipelineImage, pipeline)
    was_ready = row.ready if row is not None and row.image == image else None
    if row is None:
        row = PipelineImage(pipeline=pipeline)
        db.session.add(row)
    if problem:
        fix = fix or f"Build it there: flask --app frontend pipelines build {pipeline}"
        problem = f"{problem} (worker host {host_id()}). {fix}"
    row.image, row.ready, row.problem = image, problem is None, problem
    row.runner, row.host, row.checked_at = runner.name, host_id(), now()
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker recorded it first: theirs stands
        db.session.rollback()
        return
    if problem and was_ready is not False:
        log.error("Pipeline %s cannot run: %s", pipeline, problem)
    elif not problem and was_ready is False:
        log.info("Pipeline %s can run again (%s)", pipeline, image)
