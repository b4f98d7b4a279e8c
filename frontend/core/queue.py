"""The queue's fair order, shared by the dispatcher (which sends runs in it) and the
queue page (whose positions are it): first in, first out for each user, round robin
across users. A user's n-th queued analysis comes after every user's (n-1)-th.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from backend.runners import now

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
