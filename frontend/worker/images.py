"""Pipeline images as the workers find them: each worker checks the image of
every pipeline on the runners it serves (at start, on the beat, and before each
run) and records it, so that the run forms offer only what can run and admins
hear when an image goes missing."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app

from backend.runners import EngineUnavailable, now

from ..core.extensions import db
from ..core.models import PipelineImage
from ..core.pipelines import all_pipelines
from ..core.runners import host_id, make_runner, runner_for, served_runners

log = logging.getLogger(__name__)


def note_image(pipeline: str, image: str, runner, problem: str | None) -> None:
    """Record what this worker found about ``pipeline``'s image. Admins hear (an
    ERROR, mailed to ADMINS) when an image goes missing, not at every check."""
    row = db.session.get(PipelineImage, pipeline)
    was_ready = row.ready if row is not None and row.image == image else None
    if row is None:
        row = PipelineImage(pipeline=pipeline)
        db.session.add(row)
    if problem:
        problem = (
            f"{problem} (worker host {host_id()}). Build it there: "
            f"flask --app frontend pipelines build {pipeline}"
        )
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


class _NoEngine:
    """Stands for a runner whose engine does not answer: nothing can run on it."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def image_problem(self, image: str, max_age: float = 0) -> str:
        return (
            f"no {self.name.capitalize()} engine answers on this host ({self.reason})"
        )

    def close(self) -> None:
        pass


def _served_runner(name: str):
    """A runner of this worker for a check; its stand-in if its engine is away."""
    try:
        return make_runner(name)
    except EngineUnavailable as exc:
        return _NoEngine(name, str(exc))


def check_images() -> dict[str, bool]:
    """Check the image of every pipeline that runs on a runner this worker serves,
    on that runner, and record the result; returns pipeline name → ready."""
    served = served_runners(current_app.config)
    runners = {}
    found = {}
    try:
        for pipeline in all_pipelines().values():
            name = runner_for(pipeline.name)
            if name not in served:
                continue  # the workers serving its runner check it
            if name not in runners:
                runners[name] = _served_runner(name)
            problem = runners[name].image_problem(pipeline.image_tag)
            note_image(pipeline.name, pipeline.image_tag, runners[name], problem)
            found[pipeline.name] = problem is None
    finally:
        for runner in runners.values():
            runner.close()
    return found
