"""Starting a run: ``start`` claims the queued row atomically (within the
per-user and site-wide limits), asks the run's kind for its plan, launches it
through the runner and records the handle, then returns at once: no task ever
waits for a pipeline. From then on this host's watcher follows it."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from backend import safe_open
from backend.runners import (
    COULD_NOT_START,
    EngineUnavailable,
    Handle,
    ImageMissing,
    LaunchFailed,
    Runner,
    RunSpec,
    now,
)

from ..core.extensions import db
from ..core.formatting import human_size
from ..core.kinds import CannotRun, Plan, kind_of
from ..core.layout import log_path, output_dir, work_dir
from ..core.models import Analysis, AnalysisState
from ..core.runners import (
    NoClusterAccount,
    cluster_account_for,
    host_id,
    make_runner,
    runner_of,
    served_runners,
)
from ..core.storage import quota_for, storage_used
from .finish import cannot_run, finalize, update_returning
from .images import note_image

log = logging.getLogger(__name__)


NOT_INSTALLED = (
    "this pipeline is not installed on the server at the moment, so the run could "
    "not start; the administrators have been told"
)

SYSTEM_FAILURE = (
    "the run could not be carried out because of a problem on the server; the "
    "administrators have been told"
)

IMAGE_FOUND_SECONDS = 10

CLAIM_LOCK = 0x4C61627175  # "Labqu"


def _serialize_claims() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK)))


def _running_count(*conditions):
    return (
        sa.select(sa.func.count(Analysis.id))
        .where(Analysis.state == AnalysisState.RUNNING, *conditions)
        .scalar_subquery()
    )


def claim(analysis_id: int, runner_name: str) -> Analysis | None:
    """Make a queued analysis this host's running one, exactly once across all
    workers, within the per-user and site-wide limits. A row this host claimed and
    has not launched (its start task died and came again) is returned as well."""
    analysis = db.session.get(Analysis, analysis_id)
    if analysis is None:
        return None
    if (
        analysis.state == AnalysisState.RUNNING
        and analysis.handle is None
        and analysis.worker == host_id()
    ):
        return analysis
    if analysis.state != AnalysisState.QUEUED:
        return None
    config = current_app.config
    _serialize_claims()
    conditions = [Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED]
    if config["MAX_RUNNING_PER_USER"]:
        mine = _running_count(Analysis.owner_id == analysis.owner_id)
        conditions.append(mine < config["MAX_RUNNING_PER_USER"])
    if config["MAX_RUNNING"]:
        conditions.append(_running_count() < config["MAX_RUNNING"])
    stamp = now()
    claimed = update_returning(
        analysis,
        sa.update(Analysis)
        .where(*conditions)
        .values(
            state=AnalysisState.RUNNING,
            started_at=stamp,
            heartbeat_at=stamp,
            attempt=Analysis.attempt + 1,
            worker=host_id(),
            runner=runner_name,
            handle=None,
            launched_at=None,
            log_offset=0,
            stopping_reason=None,
            dispatched_at=None,
            progress_percent=0.0,
            progress_message="starting",
        ),
    )
    if not claimed:
        # Held back by a limit (or taken): due again at the next dispatch.
        db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED)
            .values(dispatched_at=None)
        )
        db.session.commit()
        return None
    db.session.commit()
    return analysis


def output_room(analysis: Analysis) -> int:
    """Bytes the project owner's quota leaves for this analysis' folder (what it
    already holds, from an earlier attempt, is its own). The folder is in the
    project's, so a member of a shared project runs on the owner's quota."""
    owner = analysis.project.owner
    return quota_for(owner) - storage_used(owner) + analysis.output_bytes


def build_spec(
    analysis: Analysis, runner: Runner, plan: Plan, room: int | None = None
) -> RunSpec:
    """The run to launch: its kind's plan, with limits capped by what the owner's
    quota leaves (``room``, when the caller has just measured it)."""
    config = current_app.config
    safe_open.ensure_folder(output_dir(analysis))
    limits = dict(plan.limits)
    room = output_room(analysis) if room is None else room
    site_cap = limits.pop("max_output_bytes")
    limits.update(
        max_output_bytes=max(min(site_cap, room), 0),
        output_limit_note="" if site_cap <= room else " (what your quota had left)",
        max_log_bytes=config["MAX_LOG_BYTES"],
    )
    return spec_for(
        analysis,
        argv=plan.argv,
        limits=limits,
        mounts=plan.mounts,
        input_dir=plan.input_dir,
        cluster_account=cluster_account_for(analysis.owner, runner.name),
    )


def spec_for(
    analysis: Analysis,
    argv=(),
    limits: dict | None = None,
    mounts: tuple = (),
    input_dir: Path | None = None,
    cluster_account: str | None = None,
) -> RunSpec:
    """The run's description from its row (the watcher needs no argv)."""
    return RunSpec(
        analysis_id=analysis.id,
        argv=list(argv),
        image=analysis.image,
        input_dir=input_dir,
        output_dir=output_dir(analysis),
        log_path=log_path(analysis),
        work_dir=work_dir(analysis),
        attempt=analysis.attempt,
        user=current_app.config["PIPELINE_USER"],
        mounts=mounts,
        cluster_account=cluster_account,
        **(limits if limits is not None else analysis.limits or {}),
    )


def _startable(analysis: Analysis | None) -> bool:
    if analysis is None:
        return False
    if analysis.state == AnalysisState.QUEUED:
        return True
    # Claimed here, not launched: its start task died and came again.
    return (
        analysis.state == AnalysisState.RUNNING
        and analysis.handle is None
        and analysis.worker == host_id()
    )


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
    if not _startable(found):
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
        db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED)
            .values(dispatched_at=None)
        )
        db.session.commit()
        return "not served here"
    try:
        runner = _runner_for_starts(name)
    except EngineUnavailable as exc:
        # Nothing is claimed: the row stays queued, and the admins are told.
        log.error("Analysis %s cannot start here: %s", analysis_id, exc)
        return "no engine"
    analysis = claim(analysis_id, runner.name)
    if analysis is None:
        return "nothing to do"
    return _launch(analysis, runner)


def _launch(analysis: Analysis, runner: Runner) -> str:
    owner = analysis.project.owner
    room = output_room(analysis)
    if room <= 0:
        whose = "your" if owner.id == analysis.owner_id else "the project owner's"
        finalize(
            analysis,
            f"{whose} storage is full ({human_size(storage_used(owner))} of "
            f"{human_size(quota_for(owner))}), so the run could not start; "
            "delete files or old analyses, then run it again",
        )
        return "failed"
    kind = kind_of(analysis)
    try:
        plan = kind.plan(analysis, runner, current_app.config)
    except CannotRun as exc:
        return cannot_run(analysis, str(exc))
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)
    # An image found a moment ago is taken as there; a launch that misses it
    # after all says so (ImageMissing).
    problem = runner.image_problem(analysis.image, max_age=IMAGE_FOUND_SECONDS)
    if problem:
        return _not_installed(analysis, runner, problem)
    try:
        spec = build_spec(analysis, runner, plan, room)
        handle = runner.launch(spec)
    except NoClusterAccount as exc:  # removed since it was submitted
        finalize(analysis, str(exc))
        return "failed"
    except ImageMissing as exc:
        return _not_installed(analysis, runner, str(exc))
    except LaunchFailed as exc:
        log.error("Analysis %s did not start: %s", analysis.id, exc)
        finalize(analysis, COULD_NOT_START, detail=str(exc))
        return "failed"
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        return _system_failure(analysis, exc)
    record_launch(analysis, handle, spec, runner.image_id(analysis.image))
    return "launched"


def _system_failure(analysis: Analysis, exc: Exception) -> str:
    log.exception("Analysis %s could not be launched", analysis.id)
    finalize(analysis, SYSTEM_FAILURE, detail=repr(exc), failure=exc)
    return "failed"


def _not_installed(analysis: Analysis, runner: Runner, problem: str) -> str:
    if not kind_of(analysis).pipeline_image:  # no pipeline to mark: the run says it
        return cannot_run(
            analysis, f"its image {analysis.image} is not on the server ({problem})"
        )
    note_image(analysis.pipeline, analysis.image, runner, problem)
    finalize(analysis, NOT_INSTALLED, detail=problem)
    return "failed"


def limits_of(spec: RunSpec) -> dict:
    return {
        "cpus": spec.cpus,
        "memory_mb": spec.memory_mb,
        "pids": spec.pids,
        "timeout_s": spec.timeout_s,
        "max_output_bytes": spec.max_output_bytes,
        "output_limit_note": spec.output_limit_note,
        "max_log_bytes": spec.max_log_bytes,
    }


def record_launch(
    analysis: Analysis, handle: Handle, spec: RunSpec, image_id: str | None = None
) -> None:
    """Keep the handle on the row: from now on this host's watcher follows it."""
    stamp = now()
    db.session.execute(
        sa.update(Analysis)
        .where(Analysis.id == analysis.id, Analysis.state == AnalysisState.RUNNING)
        .values(
            handle=handle.as_dict(),
            launched_at=stamp,
            heartbeat_at=stamp,
            limits=limits_of(spec),
            image_id=image_id,
            progress_message="running",
        )
    )
    db.session.commit()
