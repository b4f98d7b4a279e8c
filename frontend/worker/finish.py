"""The end of a run, recorded exactly once (``finalize``): its state, outcome and
usage, its owner's mail in the same transaction (as its kind says), a snapshot of
a failure in FAILED_ANALYSES_DIR, and the slot it frees offered to the queue."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import traceback
from pathlib import Path

import sqlalchemy as sa
from flask import render_template
from sqlalchemy.orm.attributes import set_committed_value

from backend import safe_open
from backend.runners import Usage, format_duration, now

from ..core.extensions import db
from ..core.kinds import kind_of
from ..core.layout import analysis_dir, files_dir, log_path, snapshot_dir
from ..core.links import external_url
from ..core.models import Analysis, AnalysisState, ProjectFile
from ..core.outbox import queue_mail, send_after_commit
from ..core.queue import request_dispatch
from ..core.storage import stored_bytes

log = logging.getLogger(__name__)


def update_returning(analysis: Analysis, statement) -> bool:
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
    done = update_returning(
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
    if not owner.notify_by_email or not kind_of(analysis).mails:
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


def cannot_run(analysis: Analysis, line: str) -> str:
    """End a run that cannot start (the server's doing: a TES SYSTEM_ERROR), the
    reason the first line of its log."""
    noun = kind_of(analysis).noun
    path = log_path(analysis)
    path.parent.mkdir(parents=True, exist_ok=True)
    with safe_open.open_for_append(path.parent, path.name) as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.write(f"The {noun} cannot run on this server: {line}.\n".encode())
    finalize(analysis, f"the {noun} cannot run on this server: {line}", detail=line)
    return "failed"


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
