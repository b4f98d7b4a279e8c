"""GA4GH TES tasks in Labqueue's sandbox: what can be run, and how.

A TES task is one container: a POSIX shell script (``driver_script``) runs the
task's executors one after the other, each with its own working folder,
environment and redirections, and keeps every executor's output and exit code in
the task's own folder, bound at ``TASK_DIR``. ``executor_logs`` reads them back
for the task log. The container is the pipelines' sandbox (no network, no
capabilities, read-only root, a non-root user, limits); the task's inputs are
bound read-only one by one, and its outputs are what it writes under
``/data/output``.

Nothing here knows the web side: it takes and returns plain data.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import safe_open

TASK_DIR = "/labqueue-tes"
OUTPUT_DIR = "/data/output"
# Container paths a task may not bind anything at (or under).
RESERVED = ("/proc", "/sys", "/dev", TASK_DIR, OUTPUT_DIR)
# Plain absolute paths: no "..", no ":" (the bind syntax), no spaces.
PATH_RE = re.compile(r"^(/[A-Za-z0-9._+@=-]+)+/?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# How much of each executor's stdout and stderr the task log shows.
LOG_TAIL_BYTES = 64 * 1024


def plain_path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain absolute path in the container, or None."""
    if not isinstance(path, str) or not PATH_RE.match(path):
        return (
            "must be an absolute path of letters, digits and . _ + @ = - "
            "(no spaces, no colons)"
        )
    normal = posixpath.normpath(path)
    if normal != path.rstrip("/") or ".." in normal.split("/"):
        return "must be a plain path (no '.' or '..' parts)"
    return None


def container_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a bind target in the task's container, or None."""
    problem = plain_path_problem(path)
    if problem:
        return problem
    normal = posixpath.normpath(path)
    if normal == "/" or any(
        normal == reserved or normal.startswith(reserved + "/") for reserved in RESERVED
    ):
        return f"may not be /, nor under {', '.join(RESERVED)}"
    above = [reserved for reserved in RESERVED if reserved.startswith(normal + "/")]
    if above:
        # Bound there, it would hide (or keep from being made) the folder below.
        return f"may not be a folder above {above[0]}, which the task needs"
    return None


def nested(path: str, other: str) -> bool:
    """Whether one of two bind targets lies inside the other (the engine would
    make the inner one's mount point inside what is bound at the outer)."""
    a, b = posixpath.normpath(path), posixpath.normpath(other)
    return a.startswith(b + "/") or b.startswith(a + "/")


def output_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be one of the task's outputs, or None."""
    if not isinstance(path, str) or not PATH_RE.match(path):
        return "must be an absolute path (no spaces, no colons)"
    normal = posixpath.normpath(path)
    if not normal.startswith(OUTPUT_DIR + "/"):
        return f"must lie under {OUTPUT_DIR}/: that is what the task keeps"
    return None


@dataclass(frozen=True)
class Executor:
    command: list[str]
    workdir: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] | None = None
    ignore_error: bool = False

    @classmethod
    def from_tes(cls, data: dict) -> Executor:
        return cls(
            command=list(data["command"]),
            workdir=data.get("workdir") or None,
            stdin=data.get("stdin") or None,
            stdout=data.get("stdout") or None,
            stderr=data.get("stderr") or None,
            env=dict(data.get("env") or {}),
            ignore_error=bool(data.get("ignore_error", False)),
        )


def _q(value: str) -> str:
    return shlex.quote(value)


def driver_script(executors: list[Executor]) -> str:
    """The shell script the container runs: each executor in a subshell (its own
    folder and environment), its output spooled to TASK_DIR/<n>.out and .err and
    then echoed to the run's log, its exit code kept in TASK_DIR/<n>.exit. The
    first failure not marked ``ignore_error`` ends the task with its code. A
    ``<n>.start`` file marks each start (its time is the file's)."""
    total = len(executors)
    lines = [
        "#!/bin/sh",
        "# Written by Labqueue for one GA4GH TES task.",
        "set -u",
        f"T={TASK_DIR}",
    ]
    for number, executor in enumerate(executors, start=1):
        percent = round(100 * (number - 1) / total)
        step = f"executor {number} of {total}"
        inner = []
        if executor.workdir:
            inner.append(f"cd {_q(executor.workdir)} || exit 126")
        for name, value in (executor.env or {}).items():
            inner.append(f"export {name}={_q(value)}")
        inner.append("exec " + " ".join(_q(part) for part in executor.command))
        stdin = _q(executor.stdin) if executor.stdin else "/dev/null"
        lines += [
            "",
            f"echo {_q(f'##progress {percent} {step}')}",
            f"echo {_q('$ ' + shlex.join(executor.command))}",
            f': > "$T/{number}.start"',
            f"( {'; '.join(inner)} ) < {stdin} "
            f'> "$T/{number}.out" 2> "$T/{number}.err"',
            "code=$?",
            f'cat "$T/{number}.out"',
            f'cat "$T/{number}.err" >&2',
        ]
        if executor.stdout:
            lines.append(f'cat "$T/{number}.out" > {_q(executor.stdout)}')
        if executor.stderr:
            lines.append(f'cat "$T/{number}.err" > {_q(executor.stderr)}')
        lines.append(f'echo "$code" > "$T/{number}.exit"')
        if executor.ignore_error:
            lines.append(
                f'[ "$code" -eq 0 ] || echo "{step} exited with $code (ignored)"'
            )
        else:
            lines.append(
                f'[ "$code" -eq 0 ] || {{ echo "{step} exited with $code" >&2; '
                'exit "$code"; }'
            )
    lines += ["", f"echo {_q('##progress 100 done')}", "exit 0", ""]
    return "\n".join(lines)


def _stamp(handle) -> str:
    moment = datetime.fromtimestamp(os.fstat(handle.fileno()).st_mtime, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def executor_logs(task_dir: Path, count: int) -> list[dict]:
    """TES ExecutorLog entries for the executors that have ended, in order.

    The task wrote every file here (it can plant links, FIFOs, anything): each is
    read through ``safe_open``, and a file that is not a regular one reads as
    absent."""
    logs = []
    for number in range(1, count + 1):
        try:
            with safe_open.open_file(task_dir, f"{number}.exit") as handle:
                code = int(handle.read(64).strip())
                end_time = _stamp(handle)
        except (FileNotFoundError, ValueError):
            break
        start_time = None
        try:
            with safe_open.open_file(task_dir, f"{number}.start") as handle:
                start_time = _stamp(handle)
        except FileNotFoundError:
            pass
        logs.append(
            {
                "start_time": start_time,
                "end_time": end_time,
                "stdout": _tail(task_dir, f"{number}.out"),
                "stderr": _tail(task_dir, f"{number}.err"),
                "exit_code": code,
            }
        )
    return logs


def _tail(task_dir: Path, name: str) -> str:
    try:
        with safe_open.open_file(task_dir, name) as handle:
            return safe_open.tail(handle, LOG_TAIL_BYTES).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def normal_image(image: str) -> str:
    """``alpine`` → ``alpine:latest``: the name Docker gives an untagged image."""
    last = image.rsplit("/", 1)[-1]
    if "@" in image or ":" in last:
        return image
    return image + ":latest"
