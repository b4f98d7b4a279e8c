"""Repairing what lost hosts and dead starts leave: a run claimed but never
launched, a launched run whose host's watcher fell silent, containers no running
row owns. Each watcher adopts the runs of a silent host it can see as it renews
its lease (``recover_lost_hosts``); the beat's ``reconcile`` does the rest."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from backend.runners import EngineUnavailable, Handle, now

from ..core.endings import finalize
from ..core.extensions import db
from ..core.kinds import spec_for
from ..core.models import Analysis, AnalysisState, WatcherLease
from ..core.queue import request_dispatch
from ..core.runners import host_id, make_runner, runner_of, served_runners

log = logging.getLogger(__name__)


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
        name = runner_of(analysis)
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
            name = runner_of(analysis)
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
        and (not runner.host_bound or handle.host == host_id())
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
