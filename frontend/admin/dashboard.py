"""What the admin home shows: the site's workers and queues, how runs went, who
stores what, mail waiting. Each figure is one query (or a fixed few) whatever
the number of analyses; durations' percentiles are taken over one query's rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..core.extensions import db
from ..core.models import (
    Analysis,
    AnalysisState,
    OutgoingMail,
    Project,
    ProjectFile,
    User,
    WatcherLease,
    utcnow,
)
from ..core.runners import site_runner
from ..core.storage import quota_for

DAYS = 30  # how far back the charts look
TOP = 10


@dataclass
class Worker:
    host: str
    runners: list[str]
    last_heartbeat: datetime
    alive: bool


def workers(now: datetime) -> list[Worker]:
    """Every worker host with a watcher lease: alive when renewed within the
    heartbeat timeout."""
    timeout = timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT_SECONDS"])
    leases = db.session.scalars(sa.select(WatcherLease).order_by(WatcherLease.host))
    return [
        Worker(
            lease.host,
            lease.runners or [],
            lease.renewed_at,
            now - lease.renewed_at < timeout,
        )
        for lease in leases
    ]


@dataclass
class QueueLine:
    runner: str
    queue: str
    queued: int = 0
    running: int = 0


def queues() -> list[QueueLine]:
    """Queued and running runs per runner's queue (``<CELERY_QUEUE>.<runner>``)."""
    base = current_app.config["CELERY_QUEUE"]
    lines: dict[str, QueueLine] = {}
    rows = db.session.execute(
        sa.select(Analysis.runner, Analysis.state, sa.func.count(Analysis.id))
        .where(Analysis.state.in_([AnalysisState.QUEUED, AnalysisState.RUNNING]))
        .group_by(Analysis.runner, Analysis.state)
    )
    for runner, state, count in rows:
        name = runner or site_runner()
        line = lines.setdefault(name, QueueLine(name, f"{base}.{name}"))
        if state == AnalysisState.QUEUED:
            line.queued += count
        else:
            line.running += count
    return sorted(lines.values(), key=lambda line: line.runner)


def runs_per_day(now: datetime) -> tuple[list[str], dict[str, list[int]]]:
    """The last DAYS days and, per pipeline, how many runs were submitted each."""
    since = (now - timedelta(days=DAYS - 1)).date()
    days = [(since + timedelta(days=n)).isoformat() for n in range(DAYS)]
    series: dict[str, list[int]] = defaultdict(lambda: [0] * DAYS)
    day = sa.func.date(Analysis.submitted_at)
    rows = db.session.execute(
        sa.select(day, Analysis.pipeline, sa.func.count(Analysis.id))
        .where(Analysis.submitted_at >= datetime.combine(since, datetime.min.time()))
        .group_by(day, Analysis.pipeline)
    )
    for when, pipeline, count in rows:
        key = when.isoformat() if isinstance(when, date) else str(when)[:10]
        if key in days:
            series[pipeline][days.index(key)] = count
    return days, dict(sorted(series.items()))


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, interpolated linearly."""
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Durations:
    pipeline: str
    runs: int
    p50: float
    p95: float


def durations(now: datetime) -> list[Durations]:
    """Per pipeline, the median and 95th percentile of how long its runs that
    succeeded in the last DAYS days ran (seconds)."""
    rows = db.session.execute(
        sa.select(Analysis.pipeline, Analysis.started_at, Analysis.finished_at).where(
            Analysis.state == AnalysisState.SUCCEEDED,
            Analysis.finished_at >= now - timedelta(days=DAYS),
            Analysis.started_at.is_not(None),
        )
    )
    found: dict[str, list[float]] = defaultdict(list)
    for pipeline, started, finished in rows:
        found[pipeline].append((finished - started).total_seconds())
    result = []
    for pipeline, seconds in sorted(found.items()):
        seconds.sort()
        median, slow = percentile(seconds, 0.5), percentile(seconds, 0.95)
        result.append(Durations(pipeline, len(seconds), median, slow))
    return result


def failures(now: datetime) -> list[tuple[str, int]]:
    """The commonest reasons runs failed in the last DAYS days."""
    reason = sa.func.coalesce(Analysis.error_summary, "(no reason recorded)")
    count = sa.func.count(Analysis.id)
    return [
        (text, number)
        for text, number in db.session.execute(
            sa.select(reason, count)
            .where(
                Analysis.state == AnalysisState.FAILED,
                Analysis.finished_at >= now - timedelta(days=DAYS),
            )
            .group_by(reason)
            .order_by(count.desc(), reason)
            .limit(TOP)
        )
    ]


@dataclass
class Storage:
    user: User
    files: int
    outputs: int

    @property
    def used(self) -> int:
        return self.files + self.outputs

    @property
    def quota(self) -> int:
        return quota_for(self.user)


def storage() -> list[Storage]:
    """The users who store the most: their projects' files and analysis folders."""
    files = (
        sa.select(Project.owner_id, sa.func.sum(ProjectFile.size).label("bytes"))
        .join(ProjectFile, ProjectFile.project_id == Project.id)
        .group_by(Project.owner_id)
        .subquery()
    )
    outputs = (
        sa.select(Project.owner_id, sa.func.sum(Analysis.output_bytes).label("bytes"))
        .join(Analysis, Analysis.project_id == Project.id)
        .group_by(Project.owner_id)
        .subquery()
    )
    held = sa.func.coalesce(files.c.bytes, 0)
    made = sa.func.coalesce(outputs.c.bytes, 0)
    rows = db.session.execute(
        sa.select(User, held, made)
        .outerjoin(files, files.c.owner_id == User.id)
        .outerjoin(outputs, outputs.c.owner_id == User.id)
        .where((held + made) > 0)
        .order_by((held + made).desc())
        .limit(TOP)
    )
    return [Storage(user, int(a), int(b)) for user, a, b in rows]


@dataclass
class MailState:
    unsent: int
    oldest: datetime | None
    failing: int  # tried and refused at least once


def mail() -> MailState:
    unsent, oldest, failing = db.session.execute(
        sa.select(
            sa.func.count(OutgoingMail.id),
            sa.func.min(OutgoingMail.created_at),
            sa.func.count(OutgoingMail.last_error),
        ).where(OutgoingMail.sent_at.is_(None))
    ).one()
    return MailState(unsent, oldest, failing)


def figures() -> dict:
    """Everything the admin home shows."""
    now = utcnow()
    users, unconfirmed = db.session.execute(
        sa.select(
            sa.func.count(User.id),
            sa.func.count(User.id).filter(User.confirmed_at.is_(None)),
        )
    ).one()
    days, per_day = runs_per_day(now)
    return {
        "now": now,
        "users": users,
        "unconfirmed": unconfirmed,
        "workers": workers(now),
        "queues": queues(),
        "days": days,
        "per_day": per_day,
        "durations": durations(now),
        "failures": failures(now),
        "storage": storage(),
        "mail": mail(),
    }
