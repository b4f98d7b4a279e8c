"""The local runner: the pipeline as a plain process of this machine, for
development machines without Docker. Same argv, folders, caps and log as the Docker
runner, but no sandbox: it runs as the worker's user, with its files and network.

Each run is started by a small detached shim (``local_shim.py``) that spools its
output and records how it ended in the run's work folder, so the watcher, in
another process, can follow it from those files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import safe_open
from .base import Handle, LaunchFailed, LogChunk, RunSpec, Status, Usage, read_spool
from .base import unlinked_bytes as _unlinked_bytes

SHIM = Path(__file__).with_name("local_shim.py")
READ_LIMIT = 4 * 1024**2


def _alive(pid: int) -> bool:
    """Running (a zombie, whose parent has not reaped it yet, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ended(handle: Handle) -> dict | None:
    """What the shim recorded of the run's end (None until it has ended)."""
    try:
        ended = json.loads(safe_open.read_text(handle.work_dir, "exit.json", 4096))
    except (OSError, ValueError):
        return None
    return ended if isinstance(ended, dict) else None


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (one per run)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    found.append(int(entry))
            except OSError:
                continue
    return found


class LocalRunner:
    """Runs the argv as a detached process: same folders, caps and log, no
    sandbox."""

    name = "local"
    sandboxed = False
    containers = False  # the pipeline runs from its folder, with host paths
    cluster_accounts = False
    host_bound = True  # its processes are seen from this host only
    on_output_end = None  # its watcher finds ends by polling the run's files

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], site: str, host: str
    ) -> LocalRunner:
        return cls(host=host)

    def __init__(self, host: str = ""):
        self.host = host or socket.gethostname()

    def close(self) -> None:
        pass

    def image_problem(self, image: str, max_age: float = 0) -> str | None:
        """The local runner needs no image: it runs the pipeline's own folder."""
        return None

    def image_id(self, image: str) -> str | None:
        return None

    def find(self, spec: RunSpec) -> Handle | None:
        try:
            pid = safe_open.read_text(spec.work_dir, "pid", 64).strip()
        except FileNotFoundError:
            return None
        return Handle(self.name, pid, self.host, str(spec.work_dir))

    def launch(self, spec: RunSpec) -> Handle:
        """Start the shim for this run (or find the run a first launch started)."""
        found = self.find(spec)
        if found:
            return found
        work = spec.work_dir
        tmp = work / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        try:  # one launch per run, even when two arrive together
            os.close(os.open(work / "launching", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            for _ in range(300):
                if (found := self.find(spec)) is not None:
                    return found
                time.sleep(0.1)
            raise LaunchFailed("another launch of this run did not finish") from None
        safe_open.ensure_folder(spec.output_dir)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
        }
        settings = {
            "argv": spec.argv,
            "cwd": str(spec.output_dir),
            "env": env,
            "max_file_bytes": spec.max_output_bytes + 1,
        }
        safe_open.write_file(work, "spec.json", json.dumps(settings).encode())
        try:
            started = subprocess.run(  # noqa: S603 (our own shim)
                [sys.executable, str(SHIM), str(work)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            pid = int(started.stdout.split()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
            raise LaunchFailed(f"the local shim did not start: {exc}") from exc
        return Handle(self.name, str(pid), self.host, str(work))

    def poll(self, handle: Handle) -> Status:
        ended = _ended(handle)
        if ended is not None:
            return Status("exited", ended.get("exit_code"))
        if _alive(int(handle.job_id)):
            return Status("running")
        return Status("missing")

    def poll_many(self, handles: list[Handle]) -> dict[str, Status]:
        return {handle.job_id: self.poll(handle) for handle in handles}

    def read_log(self, handle: Handle, offset: int) -> LogChunk:
        ended = safe_open.exists(handle.work_dir, "exit.json")
        return read_spool(
            Path(handle.work_dir), "output.log", offset, ended, READ_LIMIT
        )

    def cancel(self, handle: Handle) -> None:
        try:
            group = int(safe_open.read_text(handle.work_dir, "group", 64))
            os.killpg(group, signal.SIGKILL)
        except (OSError, ValueError):
            pass  # not started yet, or gone

    def usage(self, handle: Handle) -> Usage:
        ended = _ended(handle)
        if ended is None:
            return Usage()
        return Usage(ended.get("peak_memory_bytes"), ended.get("cpu_seconds"))

    def unlinked_output_bytes(self, handle: Handle) -> int:
        try:
            spec = json.loads(safe_open.read_text(handle.work_dir, "spec.json"))
        except (OSError, ValueError):
            return 0
        return _unlinked_bytes(_session(int(handle.job_id)), spec["cwd"])

    def cleanup(self, handle: Handle) -> None:
        """Stop whatever the run left running, and drop its spooled output."""
        self.cancel(handle)
        for name in ("output.log", "spec.json", "exit.json", "group"):
            safe_open.remove(handle.work_dir, name)

    def release(self, handle: Handle) -> None:
        pass  # nothing is held: the run's files are all there is

    def jobs(self) -> list[tuple[int, str]]:
        return []  # a local run's process ends with its run
