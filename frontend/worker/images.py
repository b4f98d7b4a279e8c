"""Pipeline images as the workers find them: each worker checks the image of
every pipeline on the runners it serves (at start, on the beat, and before each
run) and records it, so that the run forms offer only what can run and admins
hear when an image goes missing."""

from __future__ import annotations

import logging

from flask import current_app

from backend.runners import EngineUnavailable

from ..core.pipelines import all_pipelines, note_image
from ..core.runners import make_runner, runner_for, served_runners

log = logging.getLogger(__name__)


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


# What admins read as the mend when the engine, not the image, is what is missing.
START_ENGINE = "Start the engine, or let the worker use it (README: Docker Compose)"


def _served_runner(name: str) -> tuple[object, str | None]:
    """A runner of this worker for a check, and the mend of a problem it finds
    (None: build the image); its stand-in if its engine is away."""
    try:
        return make_runner(name), None
    except EngineUnavailable as exc:
        return _NoEngine(name, str(exc)), START_ENGINE


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
            runner, fix = runners[name]
            problem = runner.image_problem(pipeline.image_tag)
            note_image(pipeline.name, pipeline.image_tag, runner, problem, fix=fix)
            found[pipeline.name] = problem is None
    finally:
        for runner, _fix in runners.values():
            runner.close()
    return found
