"""The worker side of analyses: claim a queued row, run it, record the outcome,
and recover rows whose worker died. Called by the Celery tasks in frontend/tasks.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import socket
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask import current_app, render_template
from flask_mailman import EmailMessage

from backend.manifest import load_pipeline
from backend.params import build_argv
from backend.runners import (
    DockerRunner,
    EngineUnavailable,
    Hooks,
    LocalRunner,
    Outcome,
    RunSpec,
    folder_size,
    format_duration,
    now,
)

from ..extensions import db
from ..formatting import human_size
from ..links import external_url
from ..models import Analysis, AnalysisState, PipelineImage, ProjectFile, User
from ..projects.services import files_dir, quota_for, storage_used
from .services import all_pipelines, analysis_dir, log_path, output_dir

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2.0
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


class Deferred(Exception):
    """The analysis must wait (the user's concurrency limit); try again later."""


def hostname() -> str:
    return socket.gethostname()


def site_id() -> str:
    """This deployment's name on a shared Docker engine: SITE_ID, or a digest of the
    database URL, which every worker of one deployment shares."""
    configured = current_app.config.get("SITE_ID")
    if configured:
        return configured
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def make_runner():
    """The configured runner: Docker, or the local one when asked or when no engine
    answers under RUNNER = "auto" (with a warning, since it cannot sandbox)."""
    choice = current_app.config["RUNNER"]
    if choice == "local":
        return LocalRunner()
    try:
        return DockerRunner(site=site_id())
    except EngineUnavailable as exc:
        if choice == "docker":
            raise
        log.warning(
            "No Docker engine (%s): using the local runner, WITHOUT a sandbox", exc
        )
        return LocalRunner()


def claim(analysis_id: int, runner_name: str) -> Analysis | None:
    """Move a queued analysis to running, exactly once across all workers."""
    analysis = db.session.get(Analysis, analysis_id)
    if analysis is None or analysis.state != AnalysisState.QUEUED:
        return None  # finished, cancelled, deleted, or another worker has it
    limit = current_app.config["MAX_RUNNING_PER_USER"]
    # Two workers may claim runs of one user at the same moment: the owner's row is
    # locked (PostgreSQL, MySQL) and the limit is checked inside the UPDATE itself.
    db.session.execute(
        sa.select(User.id).where(User.id == analysis.owner_id).with_for_update()
    )
    conditions = [Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED]
    if limit:
        running = (
            sa.select(sa.func.count(Analysis.id))
            .where(
                Analysis.owner_id == analysis.owner_id,
                Analysis.state == AnalysisState.RUNNING,
            )
            .scalar_subquery()
        )
        conditions.append(running < limit)
    stamp = now()
    claimed = db.session.execute(
        sa.update(Analysis)
        .where(*conditions)
        .values(
            state=AnalysisState.RUNNING,
            started_at=stamp,
            heartbeat_at=stamp,
            attempt=Analysis.attempt + 1,
            worker=hostname(),
            runner=runner_name,
            progress_percent=0.0,
            progress_message="starting",
        )
    ).rowcount
    db.session.commit()
    if not claimed:
        db.session.refresh(analysis)
        if limit and analysis.state == AnalysisState.QUEUED:
            raise Deferred(f"user {analysis.owner_id} already runs {limit} analyses")
        return None
    db.session.refresh(analysis)
    return analysis


def output_room(analysis: Analysis) -> int:
    """Bytes the owner's quota leaves for this analysis' folder (what it already
    holds, from an earlier attempt, is its own)."""
    owner = analysis.owner
    return quota_for(owner) - storage_used(owner) + analysis.output_bytes


def build_spec(analysis: Analysis, runner) -> RunSpec:
    config = current_app.config
    pipeline = load_pipeline(Path(config["PIPELINES_DIR"]) / analysis.pipeline)
    inputs, outputs = files_dir(analysis.project), output_dir(analysis)
    outputs.mkdir(parents=True, exist_ok=True)
    if isinstance(runner, LocalRunner):
        argv = build_argv(
            pipeline, analysis.params, str(inputs), str(outputs), str(pipeline.folder)
        )
    else:
        argv = build_argv(pipeline, analysis.params)
    resources = pipeline.resources
    room, site_cap = output_room(analysis), config["MAX_OUTPUT_BYTES"]
    return RunSpec(
        analysis_id=analysis.id,
        argv=argv,
        image=analysis.image,
        input_dir=inputs,
        output_dir=outputs,
        log_path=log_path(analysis),
        cpus=min(resources.cpus, config["MAX_CPUS_PER_RUN"]),
        memory_mb=min(resources.memory_mb, config["MAX_MEMORY_MB_PER_RUN"]),
        pids=min(resources.pids, config["MAX_PIDS_PER_RUN"]),
        timeout_s=60 * min(resources.timeout_minutes, config["MAX_RUN_MINUTES"]),
        max_output_bytes=min(site_cap, room),
        output_limit_note="" if site_cap <= room else " (what your quota had left)",
        max_log_bytes=config["MAX_LOG_BYTES"],
        user=config["PIPELINE_USER"],
    )


class _DatabaseHooks(Hooks):
    """Progress is noted by the log thread and written, with a heartbeat, from the
    runner's own loop, which also reads cancellation requests."""

    def __init__(self, analysis_id: int):
        self.analysis_id = analysis_id
        self.latest: tuple[float, str] | None = None
        self.output_size: int | None = None
        self.lock = threading.Lock()
        self.last_write = 0.0
        super().__init__(
            on_progress=self._note,
            should_cancel=self._tick,
            on_output_size=self._note_size,
        )

    def _note(self, percent: float, message: str) -> None:
        with self.lock:
            self.latest = (percent, message[:255])

    def _note_size(self, size: int) -> None:
        # Outputs count against the quota while the run goes on, not only after.
        self.output_size = size

    def _tick(self) -> bool:
        if time.monotonic() - self.last_write < HEARTBEAT_SECONDS:
            return False
        self.last_write = time.monotonic()
        return self.flush()

    def flush(self) -> bool:
        values = {"heartbeat_at": now()}
        with self.lock:
            if self.latest is not None:
                values["progress_percent"], values["progress_message"] = self.latest
        if self.output_size is not None:
            values["output_bytes"] = self.output_size
        db.session.execute(
            sa.update(Analysis).where(Analysis.id == self.analysis_id).values(**values)
        )
        db.session.commit()
        return bool(
            db.session.scalar(
                sa.select(Analysis.cancel_requested).where(
                    Analysis.id == self.analysis_id
                )
            )
        )


def execute(analysis_id: int) -> str:
    """Run one analysis if it is queued; returns what happened, for the task log."""
    runner = make_runner()
    try:
        return _execute(analysis_id, runner)
    finally:
        runner.close()


def _execute(analysis_id: int, runner) -> str:
    analysis = claim(analysis_id, runner.name)
    if analysis is None:
        return "nothing to do"
    hooks = _DatabaseHooks(analysis.id)
    failure = None
    try:
        # The web offered the pipeline from the last check; look again now.
        problem = runner.image_problem(analysis.image)
        if output_room(analysis) <= 0:
            owner = analysis.owner
            outcome = Outcome(
                None,
                f"your storage is full ({human_size(storage_used(owner))} of "
                f"{human_size(quota_for(owner))}), so the run could not start; "
                "delete files or old analyses, then run it again",
                analysis.started_at,
            )
        elif problem:
            note_image(analysis.pipeline, analysis.image, runner, problem)
            outcome = Outcome(None, NOT_INSTALLED, analysis.started_at, detail=problem)
        else:
            outcome = runner.run(build_spec(analysis, runner), hooks)
            if outcome.detail:
                log.error("Analysis %s did not start: %s", analysis.id, outcome.detail)
    except Exception as exc:  # a system failure, not the pipeline's: tell admins
        failure = exc
        outcome = Outcome(None, SYSTEM_FAILURE, analysis.started_at, detail=repr(exc))
        log.exception("Analysis %s failed in the worker", analysis.id)
    finally:
        hooks.flush()
    record(analysis, outcome, failure)
    return analysis.state.value


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
            f"{problem} (worker host {hostname()}). Build it there: "
            f"flask --app frontend pipelines build {pipeline}"
        )
    row.image, row.ready, row.problem = image, problem is None, problem
    row.runner, row.host, row.checked_at = runner.name, hostname(), now()
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another worker recorded it first: theirs stands
        db.session.rollback()
        return
    if problem and was_ready is not False:
        log.error("Pipeline %s cannot run: %s", pipeline, problem)
    elif not problem and was_ready is False:
        log.info("Pipeline %s can run again (%s)", pipeline, image)


def check_images() -> dict[str, bool]:
    """Check every pipeline's image on this worker's runner and record the result;
    returns pipeline name → ready."""
    runner = make_runner()
    found = {}
    try:
        for pipeline in all_pipelines().values():
            problem = runner.image_problem(pipeline.image_tag)
            note_image(pipeline.name, pipeline.image_tag, runner, problem)
            found[pipeline.name] = problem is None
    finally:
        runner.close()
    return found


def record(analysis: Analysis, outcome: Outcome, failure: Exception | None) -> None:
    """Write the outcome on the row; snapshot and notify as needed."""
    db.session.refresh(analysis)
    analysis.output_bytes = folder_size(analysis_dir(analysis))
    analysis.finished_at = outcome.finished_at
    analysis.exit_code = outcome.exit_code
    analysis.image_id = outcome.image_id or analysis.image_id
    if outcome.succeeded:
        analysis.state = AnalysisState.SUCCEEDED
        analysis.progress_percent = 100.0
    elif outcome.reason == "cancelled":
        analysis.state = AnalysisState.CANCELLED
        analysis.error_summary = "Cancelled by request."
    else:
        analysis.state = AnalysisState.FAILED
        reason = outcome.reason or "the run failed"
        analysis.error_summary = reason[0].upper() + reason[1:] + "."
    db.session.commit()
    if analysis.state == AnalysisState.FAILED:
        snapshot_failure(analysis, outcome, failure)
    if analysis.state != AnalysisState.CANCELLED:
        notify(analysis)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_failure(analysis: Analysis, outcome: Outcome, failure) -> Path:
    """Keep what is needed to understand a failed run in FAILED_ANALYSES_DIR/<id>/."""
    target = Path(current_app.config["FAILED_ANALYSES_DIR"]) / str(analysis.id)
    target.mkdir(parents=True, exist_ok=True)
    (target / "params.json").write_text(json.dumps(analysis.params, indent=2))
    if log_path(analysis).exists():
        shutil.copyfile(log_path(analysis), target / "log.txt")
    started, finished = analysis.started_at, analysis.finished_at
    error = {
        "analysis": analysis.id,
        "pipeline": f"{analysis.pipeline} {analysis.pipeline_version}",
        "reason": outcome.reason,
        "detail": outcome.detail,
        "exit_code": outcome.exit_code,
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
    }
    (target / "error.json").write_text(json.dumps(error, indent=2))
    files = files_dir(analysis.project)
    inputs = [
        {"path": path, "size": size, "sha256": _sha256(files / path)}
        for path, size in db.session.execute(
            sa.select(ProjectFile.path, ProjectFile.size)
            .where(ProjectFile.project_id == analysis.project_id, ~ProjectFile.is_dir)
            .order_by(ProjectFile.path)
        )
        if (files / path).is_file()
    ]
    (target / "inputs.json").write_text(json.dumps(inputs, indent=2))
    return target


def notify(analysis: Analysis) -> None:
    """Email the owner that the analysis ended, unless they turned that off."""
    owner = analysis.owner
    if not owner.notify_by_email:
        return
    duration = None
    if analysis.started_at and analysis.finished_at:
        seconds = (analysis.finished_at - analysis.started_at).total_seconds()
        duration = format_duration(seconds)
    link = external_url("analyses.detail", analysis_id=analysis.id)
    verb = "finished" if analysis.state == AnalysisState.SUCCEEDED else "failed"
    body = render_template(
        "analyses/email/finished.txt", analysis=analysis, duration=duration, link=link
    )
    # One line, whatever a project was called before names were checked.
    subject = " ".join(f"{analysis.pipeline} on {analysis.project.name} {verb}".split())
    message = EmailMessage(
        subject=subject,
        body=body,
        to=[owner.email],
    )
    try:
        message.send()
    except Exception:  # mail trouble must not turn a finished run into a failure
        log.exception("Could not email the outcome of analysis %s", analysis.id)


# --- Recovery -----------------------------------------------------------------------


def reconcile() -> dict[str, list[int]]:
    """Repair what dead workers left: running rows without a heartbeat go back to
    the queue (or fail with "worker lost" after MAX_ATTEMPTS), and containers whose
    analysis is not running or queued are removed."""
    config = current_app.config
    stale_before = now() - timedelta(seconds=config["HEARTBEAT_TIMEOUT_SECONDS"])
    report: dict[str, list[int]] = {"requeued": [], "lost": [], "orphans": []}
    stale = db.session.scalars(
        sa.select(Analysis).where(
            Analysis.state == AnalysisState.RUNNING,
            sa.or_(
                Analysis.heartbeat_at < stale_before, Analysis.heartbeat_at.is_(None)
            ),
        )
    ).all()
    for analysis in stale:
        if analysis.attempt < config["MAX_ATTEMPTS"]:
            moved = db.session.execute(
                sa.update(Analysis)
                .where(
                    Analysis.id == analysis.id,
                    Analysis.state == AnalysisState.RUNNING,
                    Analysis.heartbeat_at == analysis.heartbeat_at,
                )
                .values(
                    state=AnalysisState.QUEUED,
                    worker=None,
                    progress_message="waiting again: its worker stopped",
                )
            ).rowcount
            db.session.commit()
            if moved:
                from .services import enqueue

                report["requeued"].append(analysis.id)
                enqueue(analysis)
        else:
            analysis.state = AnalysisState.FAILED
            analysis.finished_at = now()
            analysis.error_summary = (
                f"Worker lost: the worker running it stopped {analysis.attempt} times."
            )
            db.session.commit()
            report["lost"].append(analysis.id)
            outcome = Outcome(None, "worker lost", analysis.started_at, now())
            snapshot_failure(analysis, outcome, None)
            notify(analysis)
    try:
        runner = DockerRunner(site=site_id())
    except EngineUnavailable:  # no engine: no containers to tidy
        return report
    alive = set(
        db.session.scalars(
            sa.select(Analysis.id).where(
                Analysis.state.in_([AnalysisState.RUNNING, AnalysisState.QUEUED])
            )
        )
    )
    try:
        orphans = [aid for aid in runner.running_analyses() if aid not in alive]
        runner.remove(orphans)
    finally:
        runner.close()
    report["orphans"] = orphans
    if any(report.values()):
        log.warning("Reconciled analyses: %s", report)
    return report


def delete_analysis(analysis: Analysis) -> None:
    """Delete an analysis row and its folder (outputs, log, parameters)."""
    folder = analysis_dir(analysis)
    db.session.delete(analysis)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)
