"""Starting a run: ``start`` claims the queued row atomically (within the
per-user and site-wide limits), asks the run's kind for its plan, launches it
through the runner and records the handle, then returns at once: no task ever
waits for a pipeline. From then on this host's watcher follows it."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app

from backend.runners import (
    COULD_NOT_START,
    EngineUnavailable,
    Handle,
    ImageMissing,
    LaunchFailed,
    Runner,
    RunSpec,
)

from ..core import queue
from ..core.endings import end_unstarted
from ..core.extensions import db
from ..core.formatting import human_size
from ..core.kinds import CannotRun, Stop, build_spec, kind_of, limits_of
from ..core.models import Analysis
from ..core.runners import (
    NoClusterAccount,
    host_id,
    make_runner,
    runner_of,
    served_runners,
)
from ..core.storage import output_room, quota_for, storage_used

log = logging.getLogger(__name__)


# What a researcher reads when the run broke down on our side; the technical
# detail goes to the failure snapshot and to the admins.
SYSTEM_FAILURE = (
    "the run could not be carried out because of a problem on the server; the "
    "administrators have been told"
)

# A start trusts an image its runner found this many seconds ago, rather than
# asking the engine before every run.
IMAGE_FOUND_SECONDS = 10


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
    begun = _begin(analysis, runner)
    if isinstance(begun, Stop):
        return end_unstarted(analysis, runner, begun)
    handle, spec = begun
    image_id = runner.image_id(analysis.image)
    queue.record_launch(analysis, handle, limits_of(spec), image_id)
    return "launched"


def _begin(analysis: Analysis, runner: Runner) -> tuple[Handle, RunSpec] | Stop:
    """Everything a start decides, in order: room in the owner's quota, the
    kind's plan, the image, then the launch itself. What stops it comes back
    as a Stop; nothing here records an ending."""
    owner = analysis.project.owner
    room = output_room(analysis)
    if room <= 0:
        whose = "your" if owner.id == analysis.owner_id else "the project owner's"
        return Stop(
            f"{whose} storage is full ({human_size(storage_used(owner))} of "
            f"{human_size(quota_for(owner))}), so the run could not start; "
            "delete files or old analyses, then run it again"
        )
    kind = kind_of(analysis)
    try:
        plan = kind.plan(analysis, runner, current_app.config)
    except CannotRun as exc:
        return Stop(log_line=str(exc))
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)
    # An image found a moment ago is taken as there; a launch that misses it
    # after all says so (ImageMissing).
    problem = runner.image_problem(analysis.image, max_age=IMAGE_FOUND_SECONDS)
    if problem:
        return kind.missing_image(analysis, problem)
    try:
        spec = build_spec(analysis, runner, plan, room)
        return runner.launch(spec), spec
    except NoClusterAccount as exc:  # removed since it was submitted
        return Stop(str(exc))
    except ImageMissing as exc:
        return kind.missing_image(analysis, str(exc))
    except LaunchFailed as exc:
        log.error("Analysis %s did not start: %s", analysis.id, exc)
        return Stop(COULD_NOT_START, detail=str(exc))
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)


def _system_failure(analysis: Analysis, exc: Exception) -> Stop:
    log.exception("Analysis %s could not be launched", analysis.id)
    return Stop(SYSTEM_FAILURE, detail=repr(exc), failure=exc)
