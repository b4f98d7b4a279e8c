"""The worker side of analyses, launch and watch:

- ``dispatch`` sends "start" for queued rows that are due, in the fair order, within
  the per-user and site-wide limits (the database is the queue of record; a lost
  message is sent again);
- ``start`` claims a row atomically and launches it through the runner, recording
  the handle, and returns at once: no task ever waits for a pipeline;
- the watcher (``watcher.py``) follows launched runs and calls ``finalize``, which
  records the ending exactly once, with its mail in the same transaction;
- ``reconcile`` repairs what a lost host or a dead start left.

Called by the Celery tasks in frontend/tasks.py and by the watcher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.orm.attributes import set_committed_value

from backend import safe_open
from backend.manifest import load_pipeline
from backend.params import build_argv
from backend.runners import (
    COULD_NOT_START,
    DockerRunner,
    EngineUnavailable,
    Handle,
    ImageMissing,
    LaunchFailed,
    LocalRunner,
    RunSpec,
    Usage,
    format_duration,
    now,
)
from backend.runners.slurm import DOCKER_TEMPLATE, SlurmRunner

from ..celery_app import served_runners
from ..core import audit
from ..core.extensions import db
from ..core.formatting import human_size
from ..core.layout import (
    analysis_dir,
    files_dir,
    log_path,
    output_dir,
    snapshot_dir,
    work_dir,
)
from ..core.links import external_url
from ..core.models import (
    TES_PIPELINE,
    Analysis,
    AnalysisState,
    PipelineImage,
    ProjectFile,
    WatcherLease,
)
from ..core.outbox import queue_mail, send_after_commit
from ..core.storage import quota_for, storage_used
from ..tes.runs import TaskCannotRun, task_run
from .queueing import request_dispatch, runner_for
from .services import NoClusterAccount, all_pipelines, cluster_account_for, stored_bytes

log = logging.getLogger(__name__)
# What a researcher reads when the run could not start or broke down on our side;
# the technical detail goes to the failure snapshot and to the admins.
NOT_INSTALLED = (
    "this pipeline is not installed on the server at the moment, so the run could "
    "not start; the administrators have been told"
)
SYSTEM_FAILURE = (
    "the run could not be carried out because of a problem on the server; the "
    "administrators have been told"
)
# A start trusts an image its runner found this many seconds ago, rather than
# asking the engine before every run.
IMAGE_FOUND_SECONDS = 10
# Claims take this PostgreSQL advisory lock, so that two claims never both pass a
# limit (SQLite has one writer at a time anyway).
CLAIM_LOCK = 0x4C61627175  # "Labqu"


def host_id() -> str:
    """This worker host's name on its runs: WORKER_HOST, or the hostname."""
    return current_app.config.get("WORKER_HOST") or socket.gethostname()


def site_id() -> str:
    """This deployment's name on a shared Docker engine: SITE_ID, or a digest of the
    database URL, which every worker of one deployment shares."""
    configured = current_app.config.get("SITE_ID")
    if configured:
        return configured
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def make_runner(name: str | None = None):
    """The runner called ``name`` (default: RUNNER). Docker raises
    EngineUnavailable when no engine answers: never a silent fallback."""
    config = current_app.config
    name = name or config["RUNNER"]
    if name == "local":
        return LocalRunner(host=host_id())
    if name == "slurm":
        return SlurmRunner(
            site=site_id(),
            host=host_id(),
            partition=config["SLURM_PARTITION"],
            account=config["SLURM_ACCOUNT"],
            template=config["SLURM_CONTAINER_COMMAND"] or DOCKER_TEMPLATE,
            sudo=config["SLURM_SUDO_COMMAND"]
            if config["SLURM_SUBMIT_AS"] == "user"
            else (),
        )
    return DockerRunner(site=site_id(), host=host_id())


# --- Start: claim, then launch ------------------------------------------------------


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
    claimed = _update_returning(
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


def _update_returning(analysis: Analysis, statement) -> bool:
    """Run an UPDATE of ``analysis``'s row; when it matched, bring the object up to
    date from the row the statement returned (one round trip, and the owner and
    project already loaded stay loaded). False when nothing matched."""
    attributes = sa.inspect(Analysis).column_attrs
    row = db.session.execute(
        statement.returning(*(attribute.columns[0] for attribute in attributes)),
        execution_options={"synchronize_session": False},
    ).first()
    if row is None:
        return False
    for attribute, value in zip(attributes, row, strict=True):
        set_committed_value(analysis, attribute.key, value)
    return True


def output_room(analysis: Analysis) -> int:
    """Bytes the project owner's quota leaves for this analysis' folder (what it
    already holds, from an earlier attempt, is its own). The folder is in the
    project's, so a member of a shared project runs on the owner's quota."""
    owner = analysis.project.owner
    return quota_for(owner) - storage_used(owner) + analysis.output_bytes


def build_spec(
    analysis: Analysis, runner, room: int | None = None, tes_run: tuple | None = None
) -> RunSpec:
    """The run to launch: argv from the manifest (or, for a TES task, from its
    executors: ``tes_run``, when the caller has it), limits from it capped by the
    configuration and by what the owner's quota leaves (``room``, when the caller
    has just measured it)."""
    config = current_app.config
    safe_open.ensure_folder(output_dir(analysis))
    if analysis.pipeline == TES_PIPELINE:
        argv, limits, mounts = tes_run or task_run(analysis, runner.name, config)
        input_dir = None
    else:
        argv, limits = _pipeline_run(analysis, runner, config)
        mounts, input_dir = (), files_dir(analysis.project)
    room = output_room(analysis) if room is None else room
    site_cap = limits.pop("max_output_bytes")
    limits.update(
        max_output_bytes=max(min(site_cap, room), 0),
        output_limit_note="" if site_cap <= room else " (what your quota had left)",
        max_log_bytes=config["MAX_LOG_BYTES"],
    )
    return spec_for(
        analysis,
        argv=argv,
        limits=limits,
        mounts=mounts,
        input_dir=input_dir,
        cluster_account=cluster_account_for(analysis.owner, runner.name),
    )


def _pipeline_run(analysis: Analysis, runner, config) -> tuple[list[str], dict]:
    """A pipeline's argv and its manifest's limits within the site's caps."""
    pipeline = load_pipeline(Path(config["PIPELINES_DIR"]) / analysis.pipeline)
    if isinstance(runner, LocalRunner):
        argv = build_argv(
            pipeline,
            analysis.params,
            str(files_dir(analysis.project)),
            str(output_dir(analysis)),
            str(pipeline.folder),
        )
    else:
        argv = build_argv(pipeline, analysis.params)
    resources = pipeline.resources
    return argv, {
        "cpus": min(resources.cpus, config["MAX_CPUS_PER_RUN"]),
        "memory_mb": min(resources.memory_mb, config["MAX_MEMORY_MB_PER_RUN"]),
        "pids": min(resources.pids, config["MAX_PIDS_PER_RUN"]),
        "timeout_s": 60 * min(resources.timeout_minutes, config["MAX_RUN_MINUTES"]),
        "max_output_bytes": config["MAX_OUTPUT_BYTES"],
    }


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
    name = found.runner or current_app.config["RUNNER"]
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


def _launch(analysis: Analysis, runner) -> str:
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
    tes_run = None
    if analysis.pipeline == TES_PIPELINE:
        try:
            tes_run = task_run(analysis, runner.name, current_app.config)
        except TaskCannotRun as exc:
            return _task_cannot_run(analysis, str(exc))
    # An image found a moment ago is taken as there; a launch that misses it
    # after all says so (ImageMissing).
    problem = runner.image_problem(analysis.image, max_age=IMAGE_FOUND_SECONDS)
    if problem:
        return _not_installed(analysis, runner, problem)
    try:
        spec = build_spec(analysis, runner, room, tes_run)
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
        log.exception("Analysis %s could not be launched", analysis.id)
        finalize(analysis, SYSTEM_FAILURE, detail=repr(exc), failure=exc)
        return "failed"
    record_launch(analysis, handle, spec, runner.image_id(analysis.image))
    return "launched"


def _not_installed(analysis: Analysis, runner, problem: str) -> str:
    if analysis.pipeline == TES_PIPELINE:  # no pipeline to mark: the task says it
        return _task_cannot_run(
            analysis, f"its image {analysis.image} is not on the server ({problem})"
        )
    note_image(analysis.pipeline, analysis.image, runner, problem)
    finalize(analysis, NOT_INSTALLED, detail=problem)
    return "failed"


def _task_cannot_run(analysis: Analysis, line: str) -> str:
    """End a TES task that cannot start (SYSTEM_ERROR), its reason in its log."""
    path = log_path(analysis)
    path.parent.mkdir(parents=True, exist_ok=True)
    with safe_open.open_for_append(path.parent, path.name) as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.write(f"The task cannot run on this server: {line}.\n".encode())
    finalize(analysis, f"the task cannot run on this server: {line}", detail=line)
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


# --- Finalize -----------------------------------------------------------------------


def finalize(
    analysis: Analysis,
    reason: str | None,
    *,
    exit_code: int | None = None,
    usage: Usage | None = None,
    detail: str | None = None,
    failure: Exception | None = None,
    dispatch: bool = True,
) -> bool:
    """Record how a running analysis ended, exactly once: of two callers (two
    watchers seeing one exit), the second finds it no longer running and does
    nothing. Its mail is written in the same transaction; a failure is
    snapshotted; the slot it frees is offered to the queue (unless the caller,
    ending several at once, dispatches once afterwards)."""
    usage = usage or Usage()
    if reason is None:
        state, summary = AnalysisState.SUCCEEDED, None
    elif reason == "cancelled":
        state, summary = AnalysisState.CANCELLED, "Cancelled by request."
    else:
        state, summary = AnalysisState.FAILED, reason[0].upper() + reason[1:] + "."
    values = {
        "state": state,
        "finished_at": now(),
        "exit_code": exit_code,
        "error_summary": summary,
        "output_bytes": stored_bytes(analysis),
        "peak_memory_bytes": usage.peak_memory_bytes,
        "cpu_seconds": usage.cpu_seconds,
    }
    if state == AnalysisState.SUCCEEDED:
        values["progress_percent"] = 100.0
    done = _update_returning(
        analysis,
        sa.update(Analysis)
        .where(
            Analysis.id == analysis.id,
            Analysis.state == AnalysisState.RUNNING,
            Analysis.attempt == analysis.attempt,
        )
        .values(**values),
    )
    if not done:
        db.session.rollback()
        return False
    mail = notification(analysis) if state != AnalysisState.CANCELLED else None
    db.session.commit()
    if state == AnalysisState.FAILED:
        snapshot_failure(analysis, reason, exit_code, detail, failure)
    if mail is not None:
        send_after_commit([mail.id])
    if dispatch:
        request_dispatch()
    return True


def notification(analysis: Analysis):
    """The owner's mail about how the analysis ended (in the outbox), unless they
    turned these mails off or it ran a TES task."""
    owner = analysis.owner
    if not owner.notify_by_email or analysis.pipeline == TES_PIPELINE:
        return None  # a TES task's client follows it: no mail for each task
    duration = None
    if analysis.started_at and analysis.finished_at:
        seconds = (analysis.finished_at - analysis.started_at).total_seconds()
        duration = format_duration(seconds)
    link = external_url("analyses.detail", analysis_id=analysis.id)
    verb = "finished" if analysis.state == AnalysisState.SUCCEEDED else "failed"
    body = render_template(
        "analyses/email/finished.txt", analysis=analysis, duration=duration, link=link
    )
    subject = f"#{analysis.id} {analysis.pipeline} on {analysis.project.name} {verb}"
    return queue_mail(owner.email, subject, body)


def _sha256(folder: Path, relpath: str) -> str | None:
    """The digest of a file beneath ``folder``; None when it is not a regular file
    reached without a link."""
    digest = hashlib.sha256()
    try:
        with safe_open.open_file(folder, relpath) as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def snapshot_failure(
    analysis: Analysis,
    reason: str | None,
    exit_code: int | None = None,
    detail: str | None = None,
    failure: Exception | None = None,
) -> Path:
    """Keep what is needed to understand a failed run in FAILED_ANALYSES_DIR/<id>/."""
    target = snapshot_dir(analysis.id)
    target.mkdir(parents=True, exist_ok=True)
    (target / "params.json").write_text(json.dumps(analysis.params, indent=2))
    safe_open.copy_to(analysis_dir(analysis), "log.txt", target / "log.txt")
    started, finished = analysis.started_at, analysis.finished_at
    error = {
        "analysis": analysis.id,
        "pipeline": f"{analysis.pipeline} {analysis.pipeline_version}",
        "reason": reason,
        "detail": detail,
        "exit_code": exit_code,
        "exception": repr(failure) if failure else None,
        "traceback": "".join(traceback.format_exception(failure)) if failure else None,
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "duration_s": (finished - started).total_seconds()
        if started and finished
        else None,
        "image": analysis.image,
        "image_id": analysis.image_id,
        "worker": analysis.worker,
        "attempt": analysis.attempt,
        "runner": analysis.runner,
        "handle": analysis.handle,
        "limits": analysis.limits,
        "peak_memory_bytes": analysis.peak_memory_bytes,
        "cpu_seconds": analysis.cpu_seconds,
    }
    (target / "error.json").write_text(json.dumps(error, indent=2))
    files = files_dir(analysis.project)
    inputs = []
    for path, size in db.session.execute(
        sa.select(ProjectFile.path, ProjectFile.size)
        .where(ProjectFile.project_id == analysis.project_id, ~ProjectFile.is_dir)
        .order_by(ProjectFile.path)
    ):
        digest = _sha256(files, path)
        if digest is not None:
            inputs.append({"path": path, "size": size, "sha256": digest})
    (target / "inputs.json").write_text(json.dumps(inputs, indent=2))
    return target


# --- Pipeline images ----------------------------------------------------------------


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


# --- Recovery -----------------------------------------------------------------------


def _live_hosts_query():
    since = now() - timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT_SECONDS"])
    return sa.select(WatcherLease.host).where(WatcherLease.renewed_at >= since)


def live_hosts() -> set[str]:
    """Hosts whose watcher renewed its lease lately."""
    return set(db.session.scalars(_live_hosts_query()))


def recover_lost_hosts(runner_named) -> dict[str, list[int]]:
    """Adopt, requeue or fail the launched runs of hosts whose watcher fell silent,
    for the runners this worker serves; ``runner_named(name)`` gives this host's
    runner (None if its engine is away). Each watcher calls this as it renews its
    lease, so a lost host is noticed by the others without the beat; one query
    when no host is lost."""
    config = current_app.config
    served = served_runners(config)
    report: dict[str, list[int]] = {"adopted": [], "requeued": [], "lost": []}
    orphaned = db.session.scalars(
        sa.select(Analysis).where(
            Analysis.state == AnalysisState.RUNNING,
            Analysis.handle.is_not(None),
            Analysis.worker.not_in(_live_hosts_query()),
        )
    ).all()
    for analysis in orphaned:
        name = analysis.runner or config["RUNNER"]
        if name in served:
            _recover_from_lost_host(analysis, runner_named(name), report)
    if any(report.values()):
        log.warning("Runs of lost hosts: %s", report)
    return report


def _back_to_queue(analysis: Analysis, message: str) -> bool:
    moved = db.session.execute(
        sa.update(Analysis)
        .where(
            Analysis.id == analysis.id,
            Analysis.state == AnalysisState.RUNNING,
            Analysis.attempt == analysis.attempt,
        )
        .values(
            state=AnalysisState.QUEUED,
            worker=None,
            handle=None,
            launched_at=None,
            dispatched_at=None,
            progress_message=message,
        )
    ).rowcount
    db.session.commit()
    return bool(moved)


def reconcile() -> dict[str, list[int]]:
    """Repair what dead starts and lost hosts left, and remove stray containers,
    for the runs of the runners this worker serves (a host that cannot see a
    Slurm job must not judge it: the hosts serving Slurm do).

    - A row claimed but never launched, after LAUNCH_GRACE_SECONDS: its run is
      adopted if this host's runner finds it, else it goes back to the queue.
    - A launched row whose host's watcher is silent (HEARTBEAT_TIMEOUT_SECONDS): its
      run is adopted if this host's runner can see it, else queued again (or,
      after MAX_ATTEMPTS, failed with "worker lost").
    - Containers of this site that no running row owns are removed.
    """
    config = current_app.config
    report: dict[str, list[int]] = {
        "adopted": [],
        "requeued": [],
        "lost": [],
        "orphans": [],
    }
    served = served_runners(config)
    runners = {}
    for name in served:
        try:
            runners[name] = make_runner(name)
        except EngineUnavailable:
            runners[name] = None
    try:
        alive = live_hosts()
        grace = now() - timedelta(seconds=config["LAUNCH_GRACE_SECONDS"])
        running = db.session.scalars(
            sa.select(Analysis).where(Analysis.state == AnalysisState.RUNNING)
        ).all()
        for analysis in running:
            name = analysis.runner or config["RUNNER"]
            if name not in served:
                continue
            if analysis.handle is None:
                if analysis.started_at and analysis.started_at > grace:
                    continue  # its start is under way
                _recover_unlaunched(analysis, runners[name], report)
            elif analysis.worker not in alive:
                _recover_from_lost_host(analysis, runners[name], report)
        for runner in runners.values():
            if runner is not None:
                report["orphans"] += _remove_orphans(runner)
    finally:
        for runner in runners.values():
            if runner is not None:
                runner.close()
    if any(report.values()):
        log.warning("Reconciled analyses: %s", report)
    return report


def _recover_unlaunched(analysis: Analysis, runner, report) -> None:
    if runner is None:
        return  # this host cannot look for its job; one whose engine answers will
    spec = spec_for(analysis, limits={})
    found = runner.find(spec)
    if found is not None:
        db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis.id, Analysis.state == AnalysisState.RUNNING)
            .values(worker=host_id(), handle=found.as_dict(), launched_at=now())
        )
        db.session.commit()
        report["adopted"].append(analysis.id)
    elif _back_to_queue(analysis, "waiting again: its start did not finish"):
        report["requeued"].append(analysis.id)
        request_dispatch()


def _recover_from_lost_host(analysis: Analysis, runner, report) -> None:
    handle = Handle.from_dict(analysis.handle)
    visible = (
        runner is not None
        and handle.runner == runner.name
        and (runner.name != "local" or handle.host == host_id())
        and runner.poll(handle).state != "missing"
    )
    if visible:  # it still runs (or ended) where this host can see it: watch it
        adopted = db.session.execute(
            sa.update(Analysis)
            .where(
                Analysis.id == analysis.id,
                Analysis.state == AnalysisState.RUNNING,
                Analysis.worker == analysis.worker,
            )
            .values(worker=host_id())
        ).rowcount
        db.session.commit()
        if adopted:
            report["adopted"].append(analysis.id)
    elif analysis.attempt < current_app.config["MAX_ATTEMPTS"]:
        if _back_to_queue(analysis, "waiting again: its worker host was lost"):
            report["requeued"].append(analysis.id)
            request_dispatch()
    elif finalize(
        analysis,
        f"worker lost: the host running it stopped {analysis.attempt} times",
        detail=f"last host: {analysis.worker}",
    ):
        report["lost"].append(analysis.id)


def _remove_orphans(runner) -> list[int]:
    owned = {
        (analysis_id, (handle or {}).get("job_id"))
        for analysis_id, handle in db.session.execute(
            sa.select(Analysis.id, Analysis.handle).where(
                Analysis.state == AnalysisState.RUNNING
            )
        )
    }
    running_ids = {analysis_id for analysis_id, _job in owned}
    orphans = []
    for analysis_id, job_id in runner.jobs():
        if (analysis_id, job_id) in owned:
            continue
        if analysis_id in running_ids and (analysis_id, None) in owned:
            continue  # being launched: its handle is not recorded yet
        runner.cleanup(Handle(runner.name, job_id))
        orphans.append(analysis_id)
    return orphans


def delete_analysis(analysis: Analysis) -> None:
    """Delete an analysis row and its folder (outputs, log, parameters)."""
    folder = analysis_dir(analysis)
    audit.record(
        "analysis.deleted",
        f"analysis {analysis.id} ({analysis.pipeline}) of {analysis.owner.email}",
    )
    db.session.delete(analysis)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)
