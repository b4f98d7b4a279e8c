"""The queue's fair order, shared by the dispatcher (which sends runs in it) and the
queue page (whose positions are it): first in, first out for each user, round robin
across users. A user's n-th queued analysis comes after every user's (n-1)-th.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app

from ..models import Analysis, AnalysisState

log = logging.getLogger(__name__)


def fair_order():
    """Queued analyses' ids, owners and dispatch times with their place in the
    fair order (1 first), as a subquery."""
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
        turns.c.id, turns.c.owner_id, turns.c.dispatched_at, position
    ).subquery()


def request_dispatch() -> None:
    """Ask a worker to dispatch now (a run was submitted, a slot freed), by task
    name. If the broker is away, the periodic dispatcher does it once it is back:
    the run waits, queued, in the database."""
    try:
        # No result is wanted: with one, Celery would also wait for the result
        # backend, which retries for as long as the broker is away.
        current_app.extensions["celery"].send_task(
            "labqueue.dispatch", retry=False, ignore_result=True
        )
    except Exception as exc:  # the broker is away
        log.warning("Dispatch not sent (the dispatcher will do it): %s", exc)
