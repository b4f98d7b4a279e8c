"""The queue's fair order, shared by the dispatcher (which sends runs in it) and the
queue page (whose positions are it): first in, first out for each user, round robin
across users. A user's n-th queued analysis comes after every user's (n-1)-th.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from backend.runners import Handle, now

from . import taskq
from .extensions import db
from .models import Analysis, AnalysisState
from .runners import runner_queue, site_runner

log = logging.getLogger(__name__)


def fair_order():
    """Queued analyses' ids, owners, runners and dispatch times with their place
    in the fair order (1 first), as a subquery."""
    turn = (
        sa.func.row_number()
        .over(
            partition_by=Analysis.owner_id,
            order_by=(Analysis.submitted_at, Analysis.id),
        )
        .label("turn")
    )
    turns = (
        sa.select(
            Analysis.id,
            Analysis.owner_id,
            Analysis.runner,
            Analysis.submitted_at,
            Analysis.dispatched_at,
            turn,
        )
        .where(Analysis.state == AnalysisState.QUEUED)
        .subquery()
    )
    position = (
        sa.func.row_number()
        .over(order_by=(turns.c.turn, turns.c.submitted_at, turns.c.id))
        .label("position")
    )
    return sa.select(
        turns.c.id, turns.c.owner_id, turns.c.runner, turns.c.dispatched_at, position
    ).subquery()


def request_dispatch() -> None:
    """Dispatch now (a run was submitted, a slot freed): a few queries and a start
    message per run sent, done by the caller itself. If the database is busy or the
    broker away, the periodic dispatcher does it later: the run waits, queued."""
    try:
        dispatch()
    except Exception as exc:  # a busy database or an absent broker: it waits
        db.session.rollback()
        log.warning("Dispatch deferred to the periodic dispatcher: %s", exc)


def _due(cutoff):
    """Queued and not on its way: never sent, or sent so long ago that its message
    must have been lost."""
    return sa.and_(
        Analysis.state == AnalysisState.QUEUED,
        sa.or_(Analysis.dispatched_at.is_(None), Analysis.dispatched_at < cutoff),
    )


def _busy(cutoff):
    """Taking a run slot: running, or sent and not yet claimed."""
    return sa.or_(
        Analysis.state == AnalysisState.RUNNING,
        sa.and_(
            Analysis.state == AnalysisState.QUEUED, Analysis.dispatched_at >= cutoff
        ),
    )


def _cutoff():
    return now() - timedelta(seconds=current_app.config["REDISPATCH_SECONDS"])


def _send_start(analysis_id: int, runner: str | None) -> bool:
    """Send "start" to the queue of the run's runner, which only workers serving
    it consume; False when the broker is away."""
    config = current_app.config
    queue = runner_queue(config, runner or site_runner())
    return taskq.send(taskq.START, analysis_id, queue=queue)


def may_go_at_once(analysis: Analysis) -> bool:
    """Whether a just-submitted (flushed, not yet committed) analysis may be sent
    without a dispatch: nothing else waits in the queue and the limits leave room,
    so the fair order would send it first anyway. One query."""
    config = current_app.config
    cutoff = _cutoff()
    count = sa.func.count(Analysis.id)
    waiting, mine, everyone = db.session.execute(
        sa.select(
            sa.select(count)
            .where(_due(cutoff), Analysis.id != analysis.id)
            .scalar_subquery(),
            sa.select(count)
            .where(_busy(cutoff), Analysis.owner_id == analysis.owner_id)
            .scalar_subquery(),
            sa.select(count).where(_busy(cutoff)).scalar_subquery(),
        )
    ).one()
    per_user, site_limit = config["MAX_RUNNING_PER_USER"], config["MAX_RUNNING"]
    return (
        waiting == 0
        and (not per_user or mine < per_user)
        and (not site_limit or everyone < site_limit)
    )


def send_at_once(analysis_id: int, runner: str) -> None:
    """Send "start" for an analysis committed as dispatched; if the broker is away
    it is made due again at once, for the periodic dispatcher."""
    if not _send_start(analysis_id, runner):  # the dispatcher sends it later
        db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED)
            .values(dispatched_at=None)
        )
        db.session.commit()


def dispatch() -> list[int]:
    """Send "start" for queued analyses that are due, in the fair order, while the
    per-user and site-wide limits leave room; returns the ids sent.

    A row sent less than REDISPATCH_SECONDS ago and not yet claimed counts as busy
    (its message is on its way); after that it is due again, so a lost message
    delays a run, never loses it.
    """
    config = current_app.config
    cutoff = _cutoff()
    anything_due = db.session.scalar(
        sa.select(Analysis.id).where(_due(cutoff)).limit(1)
    )
    if anything_due is None:  # the usual case once a slot frees: nothing waits
        db.session.rollback()
        return []
    busy = dict(
        db.session.execute(
            sa.select(Analysis.owner_id, sa.func.count(Analysis.id))
            .where(_busy(cutoff))
            .group_by(Analysis.owner_id)
        ).all()
    )
    per_user, site_limit = config["MAX_RUNNING_PER_USER"], config["MAX_RUNNING"]
    room = site_limit - sum(busy.values()) if site_limit else 1_000_000
    order = fair_order()
    due = db.session.execute(
        sa.select(order.c.id, order.c.owner_id, order.c.runner)
        .where(sa.or_(order.c.dispatched_at.is_(None), order.c.dispatched_at < cutoff))
        .order_by(order.c.position)
        .limit(max(room, 0) + 5000)  # room, and some for users at their limit
    ).all()
    chosen = []
    for analysis_id, owner, runner in due:
        if room <= 0:
            break
        if per_user and busy.get(owner, 0) >= per_user:
            continue
        chosen.append((analysis_id, runner))
        busy[owner] = busy.get(owner, 0) + 1
        room -= 1
    db.session.rollback()
    sent = []
    for analysis_id, runner in chosen:
        marked = db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == analysis_id, _due(cutoff))
            .values(dispatched_at=now())
        ).rowcount
        if not marked:  # claimed, cancelled or sent by another dispatcher meanwhile
            db.session.rollback()
            continue
        if not _send_start(analysis_id, runner):  # the broker is away: it stays due
            db.session.rollback()
            break
        db.session.commit()
        sent.append(analysis_id)
    return sent


# --- Claims ---------------------------------------------------------------------------

# Claims take this PostgreSQL advisory lock, so that two claims never both pass a
# limit (SQLite has one writer at a time anyway).
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


def claim(analysis_id: int, runner_name: str, host: str) -> Analysis | None:
    """Make a queued analysis ``host``'s running one, exactly once across all
    workers, within the per-user and site-wide limits (checked in the same
    statement). A row that host claimed and has not launched (its start task
    died and came again) is returned as well."""
    analysis = db.session.get(Analysis, analysis_id)
    if not startable(analysis, host):
        return None
    if analysis.state == AnalysisState.RUNNING:  # claimed here, never launched
        return analysis
    config = current_app.config
    _serialize_claims()
    conditions = [Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED]
    if config["MAX_RUNNING_PER_USER"]:
        mine = _running_count(Analysis.owner_id == analysis.owner_id)
        conditions.append(mine < config["MAX_RUNNING_PER_USER"])
    if config["MAX_RUNNING"]:
        conditions.append(_running_count() < config["MAX_RUNNING"])
    stamp = now()
    claimed = analysis.update_from(
        sa.update(Analysis)
        .where(*conditions)
        .values(
            state=AnalysisState.RUNNING,
            started_at=stamp,
            heartbeat_at=stamp,
            attempt=Analysis.attempt + 1,
            worker=host,
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
        make_due_again(analysis_id)
        return None
    db.session.commit()
    return analysis


def make_due_again(analysis_id: int) -> None:
    """Leave a queued analysis due for the dispatcher (its start went where it
    cannot run: it is sent again to its runner's queue)."""
    db.session.execute(
        sa.update(Analysis)
        .where(Analysis.id == analysis_id, Analysis.state == AnalysisState.QUEUED)
        .values(dispatched_at=None)
    )
    db.session.commit()


def startable(analysis: Analysis | None, host: str) -> bool:
    """Whether a start on ``host`` may go on with ``analysis``: queued, or
    claimed by that host and never launched."""
    if analysis is None:
        return False
    if analysis.state == AnalysisState.QUEUED:
        return True
    # Claimed here, not launched: its start task died and came again.
    return (
        analysis.state == AnalysisState.RUNNING
        and analysis.handle is None
        and analysis.worker == host
    )


def record_launch(
    analysis: Analysis, handle: Handle, limits: dict, image_id: str | None = None
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
            limits=limits,
            image_id=image_id,
            progress_message="running",
        )
    )
    db.session.commit()
