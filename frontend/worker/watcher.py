"""The watcher: one per worker host, a thread in the Celery worker's main process,
supervising every run launched on that host.

Every WATCH_SECONDS it renews its lease (one watcher per host: a second worker on
the host stands by), loads the host's launched runs, copies their new log bytes and
progress, keeps their heartbeat, stops those that must stop (cancel, wall clock,
output and log caps), and finalizes those that ended, exactly once. A watcher that
starts, or takes a dead one's place, picks every run up where its log was recorded.
Each time it renews its lease it also looks for hosts whose watcher fell silent
(HEARTBEAT_TIMEOUT_SECONDS) and takes over the runs it can see of the runners its
worker serves, or queues them again (``recovery.recover_lost_hosts``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

from backend.runners import EngineUnavailable, Handle, Status, Usage, now
from backend.supervision import RunWatch

from ..core import queue
from ..core.endings import finalize
from ..core.extensions import db
from ..core.kinds import spec_for
from ..core.models import Analysis, AnalysisState, WatcherLease
from ..core.runners import host_id, make_runner, runner_of, served_runners
from .recovery import recover_lost_hosts

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Watcher:
    """Supervises this host's launched runs until ``stop``."""

    def __init__(self, app: Flask):
        self.app = app
        self.token = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.wake = threading.Event()  # a run's output ended: look now
        self.thread: threading.Thread | None = None
        self.watches: dict[int, RunWatch] = {}
        self.runners: dict[str, object] = {}
        self.holds_lease = False
        self.renewed = 0.0  # time.monotonic() of the last renewal
        config = app.config
        # Renewing is a write: often enough that a standby never finds the lease
        # stale (a quarter of the timeout), not at every look.
        self.renew_every = max(
            config["WATCH_SECONDS"], min(5.0, config["HEARTBEAT_TIMEOUT_SECONDS"] / 8)
        )
        self.cleaner = ThreadPoolExecutor(2, thread_name_prefix="cleanup")
        self.served = served_runners(config)

    # --- life --------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        interval = self.app.config["WATCH_SECONDS"]
        while not self.stopping.is_set():
            with self.app.app_context():
                try:
                    self.tick()
                except Exception:  # one bad tick must not end supervision
                    log.exception("Watcher tick failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            self.wake.wait(interval)
            self.wake.clear()
        with self.app.app_context():
            self._release()
        self.cleaner.shutdown(wait=True)
        for runner in self.runners.values():
            runner.close()

    # --- lease -------------------------------------------------------------------

    def _hold_lease(self) -> bool:
        """Renew this host's lease, or take it from a watcher that is gone."""
        host, stamp = host_id(), now()
        stale = stamp - timedelta(
            seconds=self.app.config["HEARTBEAT_TIMEOUT_SECONDS"] / 4
        )
        lease = db.session.get(WatcherLease, host)
        if lease is None:
            db.session.add(
                WatcherLease(
                    host=host,
                    token=self.token,
                    pid=os.getpid(),
                    renewed_at=stamp,
                    runners=self.served,
                )
            )
            try:
                db.session.commit()
                return True
            except sa.exc.IntegrityError:
                db.session.rollback()
                return False
        mine = lease.token == self.token
        # Another watcher on this host that died (kill -9) is seen at once.
        gone = lease.renewed_at < stale or (
            lease.pid != os.getpid() and not _pid_alive(lease.pid)
        )
        if not (mine or gone):
            db.session.rollback()
            return False
        taken = db.session.execute(
            sa.update(WatcherLease)
            .where(WatcherLease.host == host, WatcherLease.token == lease.token)
            .values(
                token=self.token, pid=os.getpid(), renewed_at=stamp, runners=self.served
            )
        ).rowcount
        db.session.commit()
        return bool(taken)

    def _release(self) -> None:
        db.session.execute(
            sa.delete(WatcherLease).where(
                WatcherLease.host == host_id(),
                WatcherLease.token == self.token,
            )
        )
        db.session.commit()

    # --- one look at every run ---------------------------------------------------

    def _runner(self, name: str):
        if name not in self.runners:
            runner = make_runner(name)
            runner.on_output_end = self.wake.set
            self.runners[name] = runner
        return self.runners[name]

    def _runner_or_none(self, name: str):
        try:
            return self._runner(name)
        except EngineUnavailable:
            return None

    def tick(self) -> None:
        # The runs are loaded once per look; an ending's commit must not make every
        # other run load again (finalize refreshes the row it ends).
        db.session().expire_on_commit = False
        renewing = time.monotonic() - self.renewed >= self.renew_every
        held = self._hold_lease() if renewing or not self.holds_lease else True
        if renewing and held:
            self.renewed = time.monotonic()
        if held and not self.holds_lease:
            log.info("Watcher %s supervises host %s", self.token[:8], host_id())
        if not held:
            self._forget_all()
            self.holds_lease = False
            return
        self.holds_lease = True
        if renewing:
            # Runs of a host gone silent: taken over here if this host sees them.
            recover_lost_hosts(self._runner_or_none)
        rows = db.session.scalars(
            sa.select(Analysis)
            .where(
                Analysis.state == AnalysisState.RUNNING,
                Analysis.worker == host_id(),
                Analysis.handle.is_not(None),
            )
            # Their folders need the project, their endings the owner.
            .options(
                sa.orm.joinedload(Analysis.project), sa.orm.joinedload(Analysis.owner)
            )
        ).all()
        rows = [row for row in rows if row.handle]  # launched: a handle to follow
        current = {row.id: row for row in rows}
        for gone in set(self.watches) - set(current):
            self._forget(gone)  # finalized, requeued or taken over elsewhere
        by_runner: dict[str, list[Analysis]] = {}
        for row in rows:
            by_runner.setdefault(runner_of(row), []).append(row)
        ended = 0
        for name, group in by_runner.items():
            try:
                runner = self._runner(name)
            except EngineUnavailable as exc:
                log.error("Watcher cannot reach the %s runner: %s", name, exc)
                continue
            statuses = runner.poll_many([Handle.from_dict(r.handle) for r in group])
            for row in group:
                status = statuses.get(row.handle["job_id"], Status("missing"))
                ended += self._look_at(runner, row, status)
        self._record(current, heartbeat=renewing)
        if ended:
            queue.request_dispatch()  # slots were freed: once for all of them

    def _watch(self, runner, row: Analysis) -> RunWatch:
        watch = self.watches.get(row.id)
        if watch is None or watch.handle.job_id != row.handle["job_id"]:
            spec = spec_for(row)
            watch = RunWatch(
                runner,
                Handle.from_dict(row.handle),
                spec,
                row.launched_at or row.started_at or now(),
                log_offset=row.log_offset or 0,
                usage=Usage(row.peak_memory_bytes, row.cpu_seconds),
            )
            watch.stop_reason = row.stopping_reason
            self.watches[row.id] = watch
        return watch

    def _look_at(self, runner, row: Analysis, status: Status) -> bool:
        """Follow one run; True when it ended and was finalized here."""
        watch = self._watch(runner, row)
        watch.copy_log()
        if not status.ended:
            watch.note(status)
            reason = watch.reason_to_stop(row.cancel_requested)
            if reason:
                db.session.execute(
                    sa.update(Analysis)
                    .where(Analysis.id == row.id)
                    .values(stopping_reason=reason[:255])
                )
                db.session.commit()
                runner.cancel(watch.handle)
            return False
        status = watch.ended(status)  # the first ending seen is the one
        if not watch.drained():
            # Its last output is still on its way: the end of the output stream
            # wakes the watcher, and the other runs need not wait meanwhile.
            return False
        ending = watch.finish(status)
        if status.state == "missing":
            log.error("Analysis %s: its run disappeared (%s)", row.id, row.handle)
        # In the ending's own transaction: recorded with it, or not at all.
        db.session.execute(
            sa.update(Analysis)
            .where(Analysis.id == row.id)
            .values(log_offset=watch.offset, **self._progress(watch))
        )
        finalized = finalize(
            row,
            ending.reason,
            exit_code=ending.exit_code,
            usage=watch.usage,
            dispatch=False,
        )
        self.watches.pop(row.id, None)
        # Removing a container takes a while; the next runs' endings need not wait.
        self.cleaner.submit(self._clean, runner, watch.handle)
        return finalized

    @staticmethod
    def _clean(runner, handle: Handle, tries: int = 4) -> None:
        # A busy engine sometimes refuses a removal for a moment (a layer still
        # busy); try again a few times before leaving it to the reconciler.
        for attempt in range(tries):
            try:
                runner.cleanup(handle)
                return
            except Exception:
                if attempt == tries - 1:  # the reconciler removes what is left
                    log.exception("Could not clean up after %s", handle.job_id)
                    return
                log.warning("Clean-up of %s failed, trying again", handle.job_id)
                time.sleep(2**attempt)

    @staticmethod
    def _progress(watch: RunWatch) -> dict:
        """The run's progress line: the pipeline's own, else why a scheduler
        holds it back, else "running" once it is no longer held."""
        values = {}
        if watch.log.progress is not None:
            values["progress_percent"], values["progress_message"] = watch.log.progress
        elif watch.waiting:
            values["progress_percent"] = 0.0
            values["progress_message"] = watch.waiting[:255]
        elif watch.waited:
            values["progress_percent"], values["progress_message"] = 0.0, "running"
        return values

    def _record(self, current: dict[int, Analysis], heartbeat: bool) -> None:
        """Progress, log offset, output size and usage of every run, and with
        ``heartbeat`` the time this watcher last saw them."""
        stamp = now()
        if current and heartbeat:
            db.session.execute(
                sa.update(Analysis)
                .where(Analysis.id.in_(list(current)))
                .values(heartbeat_at=stamp)
            )
        for analysis_id, watch in self.watches.items():
            row = current.get(analysis_id)
            if row is None:
                continue
            values = self._progress(watch)
            if watch.offset != row.log_offset:
                values["log_offset"] = watch.offset
            if watch.output_size is not None and watch.output_size != row.output_bytes:
                values["output_bytes"] = watch.output_size
            if heartbeat:  # usage so far, for the pages and a next watcher
                if watch.usage.peak_memory_bytes != row.peak_memory_bytes:
                    values["peak_memory_bytes"] = watch.usage.peak_memory_bytes
                if watch.usage.cpu_seconds != row.cpu_seconds:
                    values["cpu_seconds"] = watch.usage.cpu_seconds
            if (
                values.get("progress_percent") == row.progress_percent
                and values.get("progress_message") == row.progress_message
            ):
                values.pop("progress_percent", None)
                values.pop("progress_message", None)
            if values:
                db.session.execute(
                    sa.update(Analysis)
                    .where(Analysis.id == analysis_id)
                    .values(**values)
                )
        db.session.commit()

    def _forget(self, analysis_id: int) -> None:
        watch = self.watches.pop(analysis_id, None)
        if watch is not None:
            watch.log.close()
            watch.runner.release(watch.handle)

    def _forget_all(self) -> None:
        for analysis_id in list(self.watches):
            self._forget(analysis_id)
