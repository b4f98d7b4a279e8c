"""Starting a run: ``start`` claims the queued row atomically (within the
per-user and site-wide limits), has it launched through the runner
(``core/launch.begin``: room, the kind's plan, the image, the launch) and
records the handle, then returns at once: no task ever waits for a pipeline.
From then on this host's watcher follows it."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app

from backend.runners import EngineUnavailable

from ..core import queue
from ..core.endings import end_unstarted
from ..core.extensions import db
from ..core.kinds import Stop, limits_of
from ..core.launch import begin
from ..core.models import Analysis
from ..core.runners import host_id, make_runner, runner_of, served_runners

log = logging.getLogger(__name__)


def _runner_for_starts(name: str):
    """The runner called ``name`` this worker process launches with, made at its
    first start and kept with the app (its engine connection is reused)."""
    runners = current_app.extensions.setdefault("labqueue.start_runners", {})
    if name not in runners:
        runners[name] = make_runner(name)
    return runners[name]


def start(analysis_id: int) -> str:
    """Claim the analysis and launch it; returns what happened, for the task log."""
    # Load the run with its owner and project once: the claim's commit refreshes
    # the row itself, and need not make the rest load again.
    session = db.session()
    expiring, session.expire_on_commit = session.expire_on_commit, False
    try:
        return _start(analysis_id)
    finally:
        session.expire_on_commit = expiring


def _start(analysis_id: int) -> str:
    found = db.session.get(
        Analysis,
        analysis_id,
        options=[
            sa.orm.joinedload(Analysis.owner),
            sa.orm.joinedload(Analysis.project),
        ],
    )
    if not queue.startable(found, host_id()):
        return "nothing to do"
    name = runner_of(found)
    if name not in served_runners(current_app.config):
        # A message sent before runners had queues of their own: the row stays
        # queued and is due again for the dispatcher, which sends it to its queue.
        log.warning(
            "Analysis %s is for the %s runner, which this worker does not serve",
            analysis_id,
            name,
        )
        queue.make_due_again(analysis_id)
        return "not served here"
    try:
        runner = _runner_for_starts(name)
    except EngineUnavailable as exc:
        # Nothing is claimed: the row stays queued, and the admins are told.
        log.error("Analysis %s cannot start here: %s", analysis_id, exc)
        return "no engine"
    analysis = queue.claim(analysis_id, runner.name, host_id())
    if analysis is None:
        return "nothing to do"
    begun = begin(analysis, runner, current_app.config)
    if not isinstance(begun, Stop):
        handle, spec = begun
        image_id = runner.image_id(analysis.image)
        queue.record_launch(analysis, handle, limits_of(spec), image_id)
        return "launched"
    return end_unstarted(analysis, runner, begun)
