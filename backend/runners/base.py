"""What every runner shares: the run's description, its handle, what a poll tells,
and the helpers that measure what a run leaves on disk.

The pipeline contract: a pipeline sees its argv, the project's files read-only at
``/data/input``, a writable ``/data/output``, a tmpfs ``/tmp``, no network, no
capabilities, a non-root user, and CPU, memory, pids and wall-clock limits. It
reports progress with lines ``##progress <percent> <message>`` on stdout.

A runner launches a run and returns at once with a ``Handle``; whoever supervises
the run (the watcher) polls it, reads its log from an offset, cancels it, samples its
usage and cleans up after it. The same run launched twice (a redelivered task) is
one run: ``launch`` finds the job of that name instead of starting another.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import safe_open

PROGRESS_RE = re.compile(r"^##progress\s+(\d{1,3}(?:\.\d+)?)\s*(.*)$")
CONTAINER_OUTPUT = "/data/output"
# The least memory the Docker engine starts a container with (it refuses less).
MIN_MEMORY_MB = 6
CONTAINER_TMP = "/tmp"  # noqa: S108 (a fresh tmpfs inside the container)
# Told to the user when the server, not the pipeline, failed to start a run.
COULD_NOT_START = (
    "the server could not start the run; the administrators have been told"
)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Mount:
    """A host folder or file bound into the container at ``target``."""

    source: Path
    target: str
    read_only: bool = True


@dataclass
class RunSpec:
    """One run of a pipeline: what to start and the limits it runs under."""

    analysis_id: int
    argv: list[str]
    image: str
    # The project's files, at /data/input; None binds none (a TES task names its
    # inputs one by one in ``mounts``).
    input_dir: Path | None
    output_dir: Path
    log_path: Path
    # A folder the runner may keep its own files in (spooled output, exit status).
    work_dir: Path | None = None
    attempt: int = 1
    cpus: float = 1.0
    memory_mb: int = 1024
    pids: int = 256
    timeout_s: float = 3600
    max_output_bytes: int = 10 * 1024**3
    # Said after the limit when it is not the site's, e.g. " (what your quota had
    # left)".
    output_limit_note: str = ""
    max_log_bytes: int = 50 * 1024**2
    user: str = "65534:65534"
    tmpfs_mb: int = 256
    # More binds (Docker only): a TES task's inputs, volumes and its own folder.
    mounts: tuple[Mount, ...] = ()
    # Slurm: the owner's cluster account to submit as (None: the worker's own).
    cluster_account: str | None = None

    def __post_init__(self) -> None:
        if self.work_dir is None:
            self.work_dir = self.log_path.parent / "run"

    def output_limit(self) -> str:
        return f"{mib(self.max_output_bytes)} limit{self.output_limit_note}"


def owner_of(user: str) -> tuple[int, int] | None:
    """Who the folders a run writes are handed to: its ``uid:gid``, when this
    process is root and can give them away (else they stay this process' own)."""
    if os.geteuid() != 0:
        return None
    uid, gid = (int(part) for part in user.split(":"))
    return uid, gid


def binds(spec: RunSpec) -> list[str]:
    """The run's ``source:target:mode`` binds: the output folder, the project's
    files (if any), and the spec's other mounts (a list: a TES task may bind one
    host file at two targets)."""
    found = [f"{spec.output_dir}:{CONTAINER_OUTPUT}:rw"]
    if spec.input_dir is not None:
        found.append(f"{spec.input_dir}:/data/input:ro")
    found += [
        f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts
    ]
    return found


def read_spool(
    folder: Path, name: str, offset: int, ended: bool, limit: int
) -> LogChunk:
    """Up to ``limit`` bytes of a run's spooled output (file ``name`` of its work
    ``folder``, which the job can write: read through ``safe_open``) from
    ``offset``; complete once the run has ``ended`` (looked at before reading, so
    no race) and nothing is left."""
    try:
        with safe_open.open_file(folder, name) as spool:
            spool.seek(offset)
            data = spool.read(limit)
            more = spool.read(1) != b""
    except FileNotFoundError:
        data, more = b"", False
    return LogChunk(data, offset + len(data), ended and not more)


@dataclass(frozen=True)
class Handle:
    """How to find a launched run again: kept on the analysis row as JSON."""

    runner: str
    job_id: str
    host: str = ""
    work_dir: str = ""

    def as_dict(self) -> dict:
        return {
            "runner": self.runner,
            "job_id": self.job_id,
            "host": self.host,
            "work_dir": self.work_dir,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Handle:
        keys = ("runner", "job_id", "host", "work_dir")
        return cls(**{key: str(data.get(key, "")) for key in keys})


@dataclass(frozen=True)
class Status:
    """What a poll found: ``running``, ``exited`` (with its code) or ``missing``
    (the job is gone: removed from outside, or its host lost it)."""

    state: str
    exit_code: int | None = None
    oom_killed: bool = False
    # How a scheduler says it ended it (a time limit, a failed node), in a
    # researcher's words; None when the run's own exit says it all.
    reason: str | None = None
    # While a scheduler holds the run back in its queue, why, in a researcher's
    # words (the wall clock does not run meanwhile).
    waiting: str | None = None
    # When it really began running, where the scheduler says (UTC).
    started_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.state != "running"


@dataclass
class LogChunk:
    data: bytes
    next_offset: int
    # True once the run has ended and every byte of its output has been read.
    complete: bool = False


@dataclass
class Usage:
    """What a run used so far (the peak is a high-water mark)."""

    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None

    def merge(self, other: Usage) -> Usage:
        """The larger of each, since a late sample may come from a gone cgroup."""

        def larger(a, b):
            return b if a is None else a if b is None else max(a, b)

        return Usage(
            larger(self.peak_memory_bytes, other.peak_memory_bytes),
            larger(self.cpu_seconds, other.cpu_seconds),
        )


@dataclass
class Outcome:
    exit_code: int | None
    reason: str | None = None  # None when it succeeded; in words a researcher reads
    started_at: datetime = field(default_factory=now)
    finished_at: datetime = field(default_factory=now)
    image_id: str | None = None
    # What went wrong in the system's own terms (engine errors, paths), for the
    # failure snapshot and the admins; never shown to the user.
    detail: str | None = None
    usage: Usage = field(default_factory=Usage)

    @property
    def succeeded(self) -> bool:
        return self.reason is None and self.exit_code == 0


class EngineUnavailable(RuntimeError):
    """The runner's engine does not answer (no Docker engine, say)."""


class LaunchFailed(RuntimeError):
    """The run could not be started; the message is for admins."""


class ImageMissing(LaunchFailed):
    """The run's image is not on the host (it went between check and start)."""


def parse_progress(line: str) -> tuple[float, str] | None:
    match = PROGRESS_RE.match(line.strip())
    if not match:
        return None
    return min(float(match.group(1)), 100.0), match.group(2).strip()


def mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MiB" if size >= 1024**2 else f"{size:,} bytes"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def unlinked_bytes(pids: Iterable[int], under: str) -> int:
    """Bytes of files below ``under`` that were deleted while one of ``pids`` still
    holds them open: they use disk, but no walk of the folder finds them. Paths are
    as the processes see them (``/data/output`` in a container). Processes this
    worker cannot see (another PID namespace, gone) count nothing."""
    seen: dict[tuple[int, int], int] = {}
    prefix = under.rstrip("/") + "/"
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not (target.startswith(prefix) and target.endswith(" (deleted)")):
                    continue
                info = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            seen[(info.st_dev, info.st_ino)] = info.st_size
    return sum(seen.values())


@runtime_checkable
class Runner(Protocol):
    """What every runner offers (Docker, Slurm, local), and what the worker may
    rely on: nothing else. A runner is found by ``name`` in the registry
    (``backend.runners.runner_class``) and made from the site's settings.

    Capabilities are attributes, so that no caller tests a runner's name:
    ``sandboxed`` (a run cannot reach the host: no network, no capabilities,
    limits), ``containers`` (a run is a container of an image: GA4GH TES tasks
    need it; otherwise the pipeline runs from its folder, with host paths) and
    ``host_bound`` (a run can be seen only from the host that launched it) and
    ``cluster_accounts`` (a run may be submitted as its owner's account on the
    cluster, when the site asks for that).
    """

    name: str
    sandboxed: bool
    containers: bool
    host_bound: bool
    cluster_accounts: bool
    # Called (if set) when a run's output ends, so its watcher looks at once.
    on_output_end: Callable[[], None] | None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], site: str, host: str) -> Runner:
        """The runner for this site and host, from the site's settings."""

    def image_problem(self, image: str, max_age: float = 0) -> str | None:
        """Why ``image`` cannot run here (for admins), or None."""

    def image_id(self, image: str) -> str | None:
        """The id of the image runs of ``image`` use, for their record."""

    def launch(self, spec: RunSpec) -> Handle:
        """Start the run and return at once, its output folder made (by handle,
        and handed to the run's user where the runner can); a second launch
        finds the first."""

    def find(self, spec: RunSpec) -> Handle | None:
        """The run a launch of ``spec`` started, if there is one."""

    def poll(self, handle: Handle) -> Status:
        """Whether the run goes on, and how it ended."""

    def poll_many(self, handles: list[Handle]) -> dict[str, Status]:
        """Every handle's status (by job id), as cheaply as the runner can."""

    def jobs(self) -> list[tuple[int, str]]:
        """This site's runs the runner knows of: (analysis id, job id)."""

    def read_log(self, handle: Handle, offset: int) -> LogChunk:
        """What the run printed from byte ``offset``; never waits."""

    def cancel(self, handle: Handle) -> None:
        """Stop the run (gone already is fine)."""

    def usage(self, handle: Handle) -> Usage:
        """Peak memory and CPU time so far, as far as the runner can tell."""

    def unlinked_output_bytes(self, handle: Handle) -> int:
        """Bytes of output files deleted while still held open."""

    def release(self, handle: Handle) -> None:
        """Stop following the run (another watcher took it)."""

    def cleanup(self, handle: Handle) -> None:
        """Remove what the run left with the runner (a container, spool files)."""

    def close(self) -> None:
        """Let go of the runner's connections."""
