"""The end of a run, recorded exactly once (``finalize``): its state, outcome and
usage, its owner's mail in the same transaction (as its kind says), a snapshot of
a failure (``snapshots.py``), and the slot it frees offered to the queue.
``end_unstarted`` ends a claimed run that stopped before it ran, as its ``Stop``
says (the server's refusal said first in the run's log). The
queue's other steps (enqueue, claim, the launch record) are in ``queue.py``."""

from __future__ import annotations

import logging
import os

import sqlalchemy as sa

from backend import safe_open
from backend.runners import Usage, now

from . import snapshots
from .extensions import db
from .kinds import Stop, kind_of
from .layout import log_path
from .models import Analysis, AnalysisState
from .outbox import send_after_commit
from .pipelines import note_image
from .queue import request_dispatch
from .storage import stored_bytes

log = logging.getLogger(__name__)


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
    nothing. A run whose program succeeded is first finished as its kind says
    (``deliver``: a TES task's outputs added to projects), and fails if that
    cannot be done. Its mail is written in the same transaction; a failure is
    snapshotted; the slot it frees is offered to the queue (unless the caller,
    ending several at once, dispatches once afterwards)."""
    usage = usage or Usage()
    kind = kind_of(analysis)
    if reason is None:
        reason = kind.deliver(analysis)
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
    done = analysis.update_from(
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
    mail = kind.end_mail(analysis) if state != AnalysisState.CANCELLED else None
    db.session.commit()
    if mail is not None:
        send_after_commit([mail.id])
    if dispatch:  # the next run need not wait for this one's snapshot
        request_dispatch()
    if state == AnalysisState.FAILED:
        snapshots.keep(analysis, reason, exit_code, detail, failure)
    return True


def still_running(analysis: Analysis) -> bool:
    """Whether this attempt has not been recorded as ended (by another watcher
    that saw the same exit): what a kind's ``deliver`` asks before doing its work
    once."""
    return bool(
        db.session.scalar(
            sa.select(sa.func.count(Analysis.id)).where(
                Analysis.id == analysis.id,
                Analysis.state == AnalysisState.RUNNING,
                Analysis.attempt == analysis.attempt,
            )
        )
    )


def end_unstarted(analysis: Analysis, runner, stop: Stop) -> str:
    """End a claimed run that could not start on ``runner``, as ``stop`` says.
    A refusal by the server (``stop.log_line``, a TES SYSTEM_ERROR) is said
    first in the run's log and is its reason."""
    if stop.missing_image is not None:
        note_image(analysis.pipeline, analysis.image, runner, stop.missing_image)
    reason, detail = stop.reason, stop.detail
    if stop.log_line is not None:
        reason, detail = _say_cannot_run(analysis, stop.log_line), stop.log_line
    finalize(analysis, reason, detail=detail, failure=stop.failure)
    return "failed"


def _say_cannot_run(analysis: Analysis, line: str) -> str:
    """Write why the server cannot run ``analysis`` as its log's first line;
    the reason to record."""
    reason = f"the {kind_of(analysis).noun} cannot run on this server: {line}"
    path = log_path(analysis)
    path.parent.mkdir(parents=True, exist_ok=True)
    with safe_open.open_for_append(path.parent, path.name) as log_file:
        log_file.seek(0, os.SEEK_END)
        log_file.write(f"{reason[0].upper()}{reason[1:]}.\n".encode())
    return reason
