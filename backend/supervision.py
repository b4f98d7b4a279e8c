"""Supervising one launched run, whatever runs it: copy its log (from an offset,
up to a cap, noting progress lines), decide when it must be stopped (cancel, wall
clock, output and log caps), and say, once it has ended, how it ended.

The watcher in the web app's worker keeps one ``RunWatch`` per run it supervises
and does the database side; nothing here knows Flask, Celery or the models.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import safe_open
from .runners.base import (
    Handle,
    RunSpec,
    Status,
    Usage,
    format_duration,
    mib,
    now,
    parse_progress,
)

SIZE_CHECK_SECONDS = 1.0
# Usage (peak memory, CPU time) is sampled every second while a run is young,
# then less often: it informs, it stops nothing (the kernel holds the limits).
USAGE_SECONDS = (1.0, 5.0)
USAGE_YOUNG_SECONDS = 10.0
DRAIN_SECONDS = 10.0
# A progress line is short; longer lines are logged but not looked at.
PROGRESS_LINE_MAX = 1024
TAIL_BYTES = 4096
# How a pipeline shows it hit the per-file size limit: killed by SIGXFSZ, or (if it
# ignores the signal, as Python does) failing with EFBIG's message.
FILE_LIMIT_CODES = {128 + signal.SIGXFSZ, -signal.SIGXFSZ}
FILE_LIMIT_MESSAGE = os.strerror(27).encode()  # EFBIG: "File too large"
# Killed or terminated by a signal nobody here sent.
OUTSIDE_KILL_CODES = {137, 143, -signal.SIGKILL, -signal.SIGTERM}


class LogCopy:
    """The analysis log: the run's output, copied as it comes, up to ``max_bytes``.
    Each byte is looked at once, however long its line; the latest progress line is
    kept in ``progress``."""

    def __init__(self, path: Path, max_bytes: int, start: int = 0):
        # ``start`` bytes were copied before (a watcher restarted): keep them, and
        # drop whatever was written after the offset that was recorded.
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = safe_open.open_for_append(path.parent, path.name)
        self.log.truncate(start)
        self.log.seek(start)
        self.max_bytes = max_bytes
        self.room = max(max_bytes - start, 0)
        self.overflowed = False
        self.progress: tuple[float, str] | None = None
        self.line = bytearray()  # the unfinished line, while it may be progress
        self.long_line = False
        self.tail = bytearray()  # the last TAIL_BYTES, to explain a failure

    def feed(self, data: bytes) -> None:
        if self.overflowed or not data:
            return
        if len(data) > self.room:
            data, self.overflowed = data[: self.room], True
        self.log.write(data)
        self.room -= len(data)
        self.tail += data[-TAIL_BYTES:]
        del self.tail[:-TAIL_BYTES]
        if self.overflowed:
            self.log.write(
                f"\n[Labqueue: the log reached its {mib(self.max_bytes)} limit here; "
                "the run was stopped]\n".encode()
            )
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line_ends(data[start:end])
            start = end + 1
        self._line_goes_on(data[start:])

    def _line_goes_on(self, piece: bytes) -> None:
        if self.long_line or len(self.line) + len(piece) > PROGRESS_LINE_MAX:
            self.long_line = True
            self.line.clear()
        else:
            self.line += piece

    def _line_ends(self, piece: bytes) -> None:
        self._line_goes_on(piece)
        if not self.long_line:
            found = parse_progress(self.line.decode("utf-8", "replace"))
            if found:
                self.progress = (found[0], found[1][:255])
        self.line.clear()
        self.long_line = False

    def close(self) -> None:
        if self.line:
            self._line_ends(b"")
        self.log.close()


@dataclass
class Ending:
    """How a run ended: ``reason`` is None when it succeeded."""

    exit_code: int | None
    reason: str | None
    output_bytes: int


class RunWatch:
    """One launched run as its watcher sees it."""

    def __init__(
        self,
        runner,
        handle: Handle,
        spec: RunSpec,
        started_at: datetime,
        log_offset: int = 0,
        usage: Usage | None = None,
    ):
        self.runner, self.handle, self.spec = runner, handle, spec
        self.started_at = started_at
        self.log = LogCopy(spec.log_path, spec.max_log_bytes, log_offset)
        self.offset = log_offset
        self.log_complete = False
        self.usage = usage or Usage()
        self.output_size: int | None = None
        self.last_size_check = 0.0
        self.last_usage = 0.0
        self.stop_reason: str | None = None
        self.ended_at: float | None = None  # time.monotonic() its end was seen
        self.end: Status | None = None  # the ending first seen
        # Where its wall clock counts from: None while a scheduler holds it back.
        self.clock_from: datetime | None = started_at
        self.waiting: str | None = None  # why it is held back, while it is
        self.waited = False  # it was held back at some point

    # --- while it runs ---------------------------------------------------------

    def note(self, status: Status) -> None:
        """Take in what a poll says of the run while it goes on: a run a
        scheduler still holds in its queue has not started, so its wall clock
        starts when it leaves the queue (a job may wait hours for a node)."""
        self.waiting = status.waiting
        if status.waiting:
            self.waited = True
            self.clock_from = None
        elif status.started_at is not None:
            # The scheduler's own record survives a watcher started again.
            self.clock_from = max(self.started_at, status.started_at)
        elif self.clock_from is None:
            self.clock_from = now()

    def copy_log(self) -> None:
        """Copy what the run printed since the last call."""
        if self.log_complete:
            return
        chunk = self.runner.read_log(self.handle, self.offset)
        self.log.feed(chunk.data)
        self.offset = chunk.next_offset
        self.log_complete = chunk.complete

    def reason_to_stop(self, cancel_requested: bool) -> str | None:
        """Why the run must be stopped now, once; None to let it go on."""
        if self.stop_reason is not None:
            return None
        reason = None
        if cancel_requested:
            reason = "cancelled"
        elif self.log.overflowed:
            reason = self._log_too_big()
        elif (
            self.clock_from is not None
            and (now() - self.clock_from).total_seconds() > self.spec.timeout_s
        ):
            reason = f"timed out after {format_duration(self.spec.timeout_s)}"
        elif time.monotonic() - self.last_size_check >= SIZE_CHECK_SECONDS:
            self.last_size_check = time.monotonic()
            self._sample_usage()
            self.output_size = safe_open.tree_size(self.spec.output_dir)
            hidden = self.runner.unlinked_output_bytes(self.handle)
            if self.output_size + hidden > self.spec.max_output_bytes:
                reason = self._outputs_too_big()
        self.stop_reason = reason
        return reason

    def _sample_usage(self) -> None:
        began = self.clock_from or now()
        young = (now() - began).total_seconds() < USAGE_YOUNG_SECONDS
        every = USAGE_SECONDS[0] if young else USAGE_SECONDS[1]
        if time.monotonic() - self.last_usage >= every:
            self.last_usage = time.monotonic()
            self.usage = self.usage.merge(self.runner.usage(self.handle))

    def _log_too_big(self) -> str:
        return f"the log grew past the {mib(self.log.max_bytes)} limit"

    def _outputs_too_big(self) -> str:
        return f"the outputs grew past the {self.spec.output_limit()}"

    # --- once it has ended -----------------------------------------------------

    def ended(self, status: Status) -> Status:
        """Take in a poll that says the run has ended, and return the ending to
        record: the first one seen. A later look must not change how it ended:
        a container removed from outside while its log drains has still exited
        with the code first seen."""
        if self.end is None:
            self.end = status
            self.ended_at = time.monotonic()
        return self.end

    def drained(self) -> bool:
        """For a run that has ended, after ``copy_log``: whether its output has all
        been copied, or DRAIN_SECONDS have passed since its end was first seen
        (what is missing then stays missing). A watcher with other runs asks this
        instead of waiting in ``finish``."""
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return self.log_complete or time.monotonic() - self.ended_at >= DRAIN_SECONDS

    def finish(self, status: Status) -> Ending:
        """Read the rest of the log, check what the run left once more (a burst
        between two checks does not pass), and say how it ended. Outputs over the
        cap are deleted."""
        seen = self.ended_at if self.ended_at is not None else time.monotonic()
        deadline = seen + DRAIN_SECONDS
        while not self.log_complete and time.monotonic() < deadline:
            before = self.offset
            self.copy_log()
            if self.offset == before and not self.log_complete:
                time.sleep(0.05)
        self.log.close()
        self.usage = self.usage.merge(self.runner.usage(self.handle))
        code = status.exit_code
        reason = self.stop_reason
        if reason is None and self.log.overflowed:
            reason = self._log_too_big()
        failed = code not in (0, None)
        if (
            (reason is None or reason.startswith("the outputs grew"))
            and failed
            and (code in FILE_LIMIT_CODES or FILE_LIMIT_MESSAGE in self.log.tail)
        ):
            # The more precise of the two, whichever was seen first: one file hit
            # the cap (so the outputs had grown past it too).
            reason = f"an output file reached the {self.spec.output_limit()}"
        size = safe_open.tree_size(self.spec.output_dir)
        if reason is None and size > self.spec.max_output_bytes:
            reason = self._outputs_too_big()
        if reason and reason.startswith(("the outputs grew", "an output file")):
            safe_open.clear_folder(self.spec.output_dir)
            reason += "; the outputs were deleted"
            size = 0
        if reason is None:
            reason = self._how_it_ended(status)
        self.output_size = size
        return Ending(code, reason, size)

    def _how_it_ended(self, status: Status) -> str | None:
        code = status.exit_code
        if status.state == "missing":
            return "the run disappeared: it was removed from outside the queue"
        if status.reason:
            return status.reason
        if code == 0:
            return None  # its own process ended well, whatever befell a child
        if status.oom_killed:
            return f"it ran out of its {self.spec.memory_mb:,} MiB memory limit"
        if code in OUTSIDE_KILL_CODES:
            return "it was stopped from outside (killed)"
        if code is None:
            return "the run ended without an exit code"
        return f"the pipeline exited with code {code}"


def run_to_end(
    runner,
    spec: RunSpec,
    should_cancel=lambda: False,
    poll_seconds: float = 0.2,
) -> tuple[Ending, RunWatch]:
    """Launch ``spec`` and supervise it here until it ends (what the watcher does
    for many runs at once, for one): for tests, benchmarks and trying a pipeline
    out. The run is cleaned up afterwards."""
    handle = runner.launch(spec)
    watch = RunWatch(runner, handle, spec, now())
    try:
        while True:
            watch.copy_log()
            status = runner.poll(handle)
            if status.ended:
                break
            watch.note(status)
            if watch.reason_to_stop(should_cancel()):
                runner.cancel(handle)
            time.sleep(poll_seconds)
        ending = watch.finish(status)
        watch.usage = watch.usage.merge(runner.usage(handle))
    finally:
        runner.cleanup(handle)
    return ending, watch
