"""Runners: execute one analysis under the pipeline contract.

A pipeline sees its argv, the project's files read-only at ``/data/input``, a
writable ``/data/output``, a tmpfs ``/tmp``, no network, no capabilities, a non-root
user, and CPU, memory, pids and wall-clock limits. It reports progress with lines
``##progress <percent> <message>`` on stdout. The Docker runner enforces all of
it; the local runner (development machines without Docker) runs the same argv as a
subprocess with the same folders, timeout and log capture, but cannot sandbox.

Both cap what a run leaves on disk: its outputs (their files, and files it deleted
but still holds open, checked every second and once more after it ends; no single
file may pass the cap either) and its log. A run over a cap fails, and what it left
over the cap is removed.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PROGRESS_RE = re.compile(r"^##progress\s+(\d{1,3}(?:\.\d+)?)\s*(.*)$")
LABEL = "labqueue.analysis"
SITE_LABEL = "labqueue.site"
POLL_SECONDS = 0.5
SIZE_CHECK_SECONDS = 1.0
CONTAINER_TMP = "/tmp"  # noqa: S108 (a fresh tmpfs inside the container)
CONTAINER_OUTPUT = "/data/output"
# A progress line is short; longer lines are logged but not looked at.
PROGRESS_LINE_MAX = 1024
TAIL_BYTES = 4096
# How a pipeline shows it hit the per-file size limit: killed by SIGXFSZ, or (if it
# ignores the signal, as Python does) failing with EFBIG's message.
FILE_LIMIT_CODES = {128 + signal.SIGXFSZ, -signal.SIGXFSZ}
FILE_LIMIT_MESSAGE = os.strerror(27).encode()  # EFBIG: "File too large"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class RunSpec:
    analysis_id: int
    argv: list[str]
    image: str
    input_dir: Path
    output_dir: Path
    log_path: Path
    cpus: float = 1.0
    memory_mb: int = 1024
    pids: int = 256
    timeout_s: float = 3600
    max_output_bytes: int = 10 * 1024**3
    # Said after the limit when it is not the site's, e.g. " (what is left of
    # your storage quota)".
    output_limit_note: str = ""
    max_log_bytes: int = 50 * 1024**2
    user: str = "65534:65534"
    tmpfs_mb: int = 256

    def output_limit(self) -> str:
        return f"{mib(self.max_output_bytes)} limit{self.output_limit_note}"


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

    @property
    def succeeded(self) -> bool:
        return self.reason is None and self.exit_code == 0


@dataclass
class Hooks:
    """How a runner reports back; the worker connects these to the database."""

    on_progress: Callable[[float, str], None] = lambda percent, message: None
    should_cancel: Callable[[], bool] = lambda: False
    on_output_size: Callable[[int], None] = lambda size: None


class EngineUnavailable(RuntimeError):
    """No Docker engine answers where DOCKER_HOST points."""


def docker_client(timeout: int = 60):
    """A Docker SDK client for the engine DOCKER_HOST names; raises
    EngineUnavailable when none answers."""
    import docker

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        # The SDK leaves its socket open when a Unix socket refuses the connection;
        # knock first with one that is closed either way.
        try:
            with socket.socket(socket.AF_UNIX) as knock:
                knock.settimeout(5)
                knock.connect(host.removeprefix("unix://"))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise EngineUnavailable(f"nothing answers at {host} ({reason})") from exc
    try:
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc


def parse_progress(line: str) -> tuple[float, str] | None:
    match = PROGRESS_RE.match(line.strip())
    if not match:
        return None
    return min(float(match.group(1)), 100.0), match.group(2).strip()


def folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MiB" if size >= 1024**2 else f"{size:,} bytes"


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


def clear_folder(folder: Path) -> None:
    """Remove what is inside ``folder`` (never following links), keep the folder."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


class _LogPump:
    """Copies output to the log file as it comes, up to ``max_bytes``, and notes
    progress lines. Each byte is looked at once, however long its line."""

    def __init__(self, log_path: Path, hooks: Hooks, max_bytes: int):
        # Written from the start each time: a re-attached run replays its output.
        self.log = open(log_path, "wb", buffering=0)  # noqa: SIM115 (closed in close)
        self.hooks = hooks
        self.room = max_bytes
        self.max_bytes = max_bytes
        self.overflowed = False
        self.line = bytearray()  # the unfinished line, while it may be progress
        self.long_line = False
        self.tail = bytearray()  # the last TAIL_BYTES, to explain a failure

    def feed(self, data: bytes) -> None:
        if self.overflowed:
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
            progress = parse_progress(self.line.decode("utf-8", "replace"))
            if progress:
                self.hooks.on_progress(*progress)
        self.line.clear()
        self.long_line = False

    def close(self) -> None:
        if self.line:
            self._line_ends(b"")
        self.log.close()


class _Watch:
    """The checks made while a run goes on: cancel, timeout, output and log size.
    ``hidden_bytes`` counts output files deleted but still open."""

    def __init__(
        self,
        spec: RunSpec,
        hooks: Hooks,
        pump: _LogPump,
        hidden_bytes: Callable[[], int] = lambda: 0,
    ):
        self.spec, self.hooks, self.pump = spec, hooks, pump
        self.hidden_bytes = hidden_bytes
        self.start = time.monotonic()
        self.last_size_check = 0.0

    def reason_to_stop(self) -> str | None:
        if self.hooks.should_cancel():
            return "cancelled"
        if self.pump.overflowed:
            return f"the log grew past the {mib(self.pump.max_bytes)} limit"
        elapsed = time.monotonic() - self.start
        if elapsed > self.spec.timeout_s:
            return f"timed out after {format_duration(self.spec.timeout_s)}"
        if elapsed - self.last_size_check >= SIZE_CHECK_SECONDS:
            self.last_size_check = elapsed
            size = folder_size(self.spec.output_dir)
            self.hooks.on_output_size(size)
            if size + self.hidden_bytes() > self.spec.max_output_bytes:
                return self.over_outputs()
        return None

    def over_outputs(self) -> str:
        return f"the outputs grew past the {self.spec.output_limit()}"

    def final_reason(self, reason: str | None, code: int | None) -> str | None:
        """The reason after the run ended: what it left is checked once more, so a
        burst between two checks does not pass. Outputs over the cap are removed."""
        if reason is None and self.pump.overflowed:
            reason = f"the log grew past the {mib(self.pump.max_bytes)} limit"
        size = folder_size(self.spec.output_dir)
        if reason is None and size > self.spec.max_output_bytes:
            reason = self.over_outputs()
        failed = code not in (0, None)
        if (
            reason is None
            and failed
            and (code in FILE_LIMIT_CODES or FILE_LIMIT_MESSAGE in self.pump.tail)
        ):
            reason = f"an output file reached the {self.spec.output_limit()}"
        if reason and reason.startswith(("the outputs grew", "an output file")):
            clear_folder(self.spec.output_dir)
            reason += "; the outputs were deleted"
            size = 0
        self.hooks.on_output_size(size)
        return reason


# Told to the user when the server, not the pipeline, failed to start a run.
COULD_NOT_START = (
    "the server could not start the run; the administrators have been told"
)


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (the local runner starts one per run)."""
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
    """Runs the argv as a subprocess: same folders, timeout and log, no sandbox."""

    name = "local"
    sandboxed = False

    def image_problem(self, image: str) -> str | None:
        """The local runner needs no image: it runs the pipeline's own folder."""
        return None

    def close(self) -> None:
        pass

    def run(self, spec: RunSpec, hooks: Hooks) -> Outcome:
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = spec.output_dir.parent / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
        }
        started = now()
        pump = _LogPump(spec.log_path, hooks, spec.max_log_bytes)
        try:
            process = subprocess.Popen(  # noqa: S603 (argv list from a manifest)
                spec.argv,
                cwd=spec.output_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            pump.close()
            return Outcome(None, COULD_NOT_START, started, now(), detail=str(exc))
        # No file may grow more than a byte past the cap, so the size check sees
        # any attempt (set from outside: the worker has threads).
        cap = spec.max_output_bytes + 1
        try:
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (cap, cap))
        except (OSError, ValueError):
            pass  # it has already ended
        reader = threading.Thread(
            target=lambda: [
                pump.feed(chunk)
                for chunk in iter(lambda: process.stdout.read1(65536), b"")
            ],
            daemon=True,
        )
        reader.start()
        watch = _Watch(
            spec,
            hooks,
            pump,
            lambda: unlinked_bytes(_session(process.pid), str(spec.output_dir)),
        )
        reason = None
        while process.poll() is None:
            reason = watch.reason_to_stop()
            if reason:
                break
            time.sleep(POLL_SECONDS)
        # The run is over when its main process ends: nothing it started lives on.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        code = process.wait()
        reader.join(timeout=10)
        process.stdout.close()
        pump.close()
        reason = watch.final_reason(reason, code)
        if reason is None and code != 0:
            reason = f"the pipeline exited with code {code}"
        return Outcome(code, reason, started, now())


class _ExitWaiter:
    """Waits in a thread for a container to exit; ``done`` is set when it has."""

    def __init__(self, container):
        self.container = container
        self.status: int | None = None
        self.done = threading.Event()
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        import docker.errors
        import requests

        while True:
            try:
                self.status = self.container.wait(timeout=None)["StatusCode"]
                break
            except requests.exceptions.RequestException:
                time.sleep(POLL_SECONDS)  # the engine restarted: wait again
            except docker.errors.DockerException:
                break  # removed under us
        self.done.set()

    def code(self) -> int | None:
        if self.status is None:  # not heard: ask for the state instead
            try:
                self.container.reload()
                self.status = self.container.attrs["State"]["ExitCode"]
            except Exception:  # noqa: S110 (gone: no code to report)
                pass
        return self.status


class DockerRunner:
    """Runs the pipeline's image through the Docker SDK, sandboxed."""

    name = "docker"
    sandboxed = True

    def __init__(self, client=None, site: str = "default"):
        self.client = client or docker_client()
        # Several Labqueue sites may share one engine: names and labels carry the
        # site, and each site only ever touches its own containers.
        self.site = site

    def close(self) -> None:
        self.client.close()

    def image_problem(self, image: str) -> str | None:
        """Why ``image`` cannot run here (for admins), or None when it can."""
        import docker.errors

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return f"the image {image} is not on this host's Docker engine"
        return None

    def container_name(self, analysis_id: int) -> str:
        return f"labqueue-{self.site}-analysis-{analysis_id}"

    def create(self, spec: RunSpec):
        import docker.types

        spec.output_dir.mkdir(parents=True, exist_ok=True)
        file_cap = spec.max_output_bytes + 1
        if os.geteuid() == 0:
            # A root worker hands the output folder to the container's user; it can
            # still read and delete what the pipeline writes.
            uid, gid = (int(part) for part in spec.user.split(":"))
            os.chown(spec.output_dir, uid, gid)
        return self.client.containers.create(
            spec.image,
            command=spec.argv,
            name=self.container_name(spec.analysis_id),
            labels={LABEL: str(spec.analysis_id), SITE_LABEL: self.site},
            user=spec.user,
            working_dir=CONTAINER_OUTPUT,
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # No file may grow more than a byte past the output cap, so the size
            # check sees any attempt; the engine keeps a bounded log.
            ulimits=[docker.types.Ulimit(name="fsize", soft=file_cap, hard=file_cap)],
            log_config=docker.types.LogConfig(
                type="json-file",
                config={"max-size": f"{2 * spec.max_log_bytes // 1024 + 1}k"},
            ),
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            tmpfs={CONTAINER_TMP: f"rw,noexec,nosuid,size={spec.tmpfs_mb}m"},
            environment={
                "HOME": CONTAINER_TMP,
                "TMPDIR": CONTAINER_TMP,
                "MPLBACKEND": "Agg",
            },
            volumes={
                str(spec.input_dir): {"bind": "/data/input", "mode": "ro"},
                str(spec.output_dir): {"bind": CONTAINER_OUTPUT, "mode": "rw"},
            },
        )

    def run(self, spec: RunSpec, hooks: Hooks) -> Outcome:
        import docker.errors

        started = now()
        try:
            container = self.client.containers.get(
                self.container_name(spec.analysis_id)
            )
        except docker.errors.NotFound:
            try:
                container = self.create(spec)
            except docker.errors.DockerException as exc:
                return Outcome(None, COULD_NOT_START, started, detail=str(exc))
        image_id = container.attrs.get("Image")
        pump = _LogPump(spec.log_path, hooks, spec.max_log_bytes)
        try:
            if container.status == "created":
                container.start()
            # The engine keeps the output: following the logs from the beginning
            # works for a fresh run and for a redelivered task re-attaching to one.
            stream = container.logs(stdout=True, stderr=True, stream=True, follow=True)
            reader = threading.Thread(
                target=lambda: [pump.feed(chunk) for chunk in stream], daemon=True
            )
            reader.start()
            watch = _Watch(spec, hooks, pump, lambda: self._unlinked(container))
            exited = _ExitWaiter(container)
            reason = None
            # The checks run on their own clock: the engine's wait is a long poll
            # that a busy log stream can hold up.
            while not exited.done.wait(POLL_SECONDS):
                reason = watch.reason_to_stop()
                if reason:
                    container.kill()
                    exited.done.wait(60)
                    break
            code = exited.code()
            reader.join(timeout=10)
            stream.close()
        finally:
            pump.close()
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass
        reason = watch.final_reason(reason, code)
        if reason is None and code != 0:
            reason = f"the pipeline exited with code {code}"
            if code == 137:
                reason += " (killed: out of memory?)"
        return Outcome(code, reason, started, now(), image_id)

    def _unlinked(self, container) -> int:
        """Deleted-but-open output files of the container's processes (needs this
        worker in the host's PID namespace; elsewhere it counts nothing)."""
        import docker.errors

        try:
            table = container.top(ps_args="-eo pid")
        except docker.errors.DockerException:
            return 0
        pids = [int(row[0]) for row in table.get("Processes") or [] if row[0].isdigit()]
        return unlinked_bytes(pids, CONTAINER_OUTPUT)

    def running_analyses(self) -> dict[int, str]:
        """Analysis id → container id for every Labqueue container on this engine."""
        found = {}
        for container in self.client.containers.list(
            all=True, filters={"label": [LABEL, f"{SITE_LABEL}={self.site}"]}
        ):
            try:
                found[int(container.labels[LABEL])] = container.id
            except (KeyError, ValueError):
                continue
        return found

    def remove(self, analysis_ids: Iterable[int]) -> None:
        import docker.errors

        for analysis_id in analysis_ids:
            try:
                self.client.containers.get(self.container_name(analysis_id)).remove(
                    force=True
                )
            except docker.errors.NotFound:
                continue
