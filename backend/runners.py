"""Runners: execute one analysis under the pipeline contract.

A pipeline sees its argv, the project's files read-only at ``/data/input``, a
writable ``/data/output``, a tmpfs ``/tmp``, no network, no capabilities, a non-root
user, and CPU, memory, pids and wall-clock limits. It reports progress with lines
``##progress <percent> <message>`` on stdout. The Docker runner enforces all of
it; the local runner (development machines without Docker) runs the same argv as a
subprocess with the same folders, timeout and log capture, but cannot sandbox.
"""

from __future__ import annotations

import os
import re
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
SIZE_CHECK_SECONDS = 2.0
CONTAINER_TMP = "/tmp"  # noqa: S108 (a fresh tmpfs inside the container)


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
    user: str = "65534:65534"
    tmpfs_mb: int = 256


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


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


class _LogPump:
    """Copies output lines to the log file as they come, noting progress lines."""

    def __init__(self, log_path: Path, hooks: Hooks):
        # Written from the start each time: a re-attached run replays its output.
        self.log = open(log_path, "wb", buffering=0)  # noqa: SIM115 (closed in close)
        self.hooks = hooks
        self.partial = b""

    def feed(self, data: bytes) -> None:
        self.log.write(data)
        self.partial += data
        *lines, self.partial = self.partial.split(b"\n")
        for line in lines:
            progress = parse_progress(line.decode("utf-8", "replace"))
            if progress:
                self.hooks.on_progress(*progress)

    def close(self) -> None:
        if self.partial:
            progress = parse_progress(self.partial.decode("utf-8", "replace"))
            if progress:
                self.hooks.on_progress(*progress)
        self.log.close()


class _Watch:
    """The checks made while a run goes on: cancel, timeout, output size."""

    def __init__(self, spec: RunSpec, hooks: Hooks):
        self.spec, self.hooks = spec, hooks
        self.start = time.monotonic()
        self.last_size_check = 0.0

    def reason_to_stop(self) -> str | None:
        if self.hooks.should_cancel():
            return "cancelled"
        elapsed = time.monotonic() - self.start
        if elapsed > self.spec.timeout_s:
            return f"timed out after {format_duration(self.spec.timeout_s)}"
        if elapsed - self.last_size_check >= SIZE_CHECK_SECONDS:
            self.last_size_check = elapsed
            if folder_size(self.spec.output_dir) > self.spec.max_output_bytes:
                limit = self.spec.max_output_bytes / 1024**2
                return f"the outputs grew past the {limit:,.0f} MiB limit"
        return None


# Told to the user when the server, not the pipeline, failed to start a run.
COULD_NOT_START = (
    "the server could not start the run; the administrators have been told"
)


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
        pump = _LogPump(spec.log_path, hooks)
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
        reader = threading.Thread(
            target=lambda: [
                pump.feed(chunk)
                for chunk in iter(lambda: process.stdout.read1(65536), b"")
            ],
            daemon=True,
        )
        reader.start()
        watch, reason = _Watch(spec, hooks), None
        while process.poll() is None:
            reason = watch.reason_to_stop()
            if reason:
                os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(POLL_SECONDS)
        code = process.wait()
        reader.join(timeout=10)
        process.stdout.close()
        pump.close()
        if reason is None and code != 0:
            reason = f"the pipeline exited with code {code}"
        return Outcome(code, reason, started, now())


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
        spec.output_dir.mkdir(parents=True, exist_ok=True)
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
            working_dir="/data/output",
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
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
                str(spec.output_dir): {"bind": "/data/output", "mode": "rw"},
            },
        )

    def run(self, spec: RunSpec, hooks: Hooks) -> Outcome:
        import docker.errors
        import requests

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
        pump = _LogPump(spec.log_path, hooks)
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
            watch, reason, code = _Watch(spec, hooks), None, None
            while code is None:
                try:
                    # Returns as soon as the container exits; else checks, again.
                    code = container.wait(timeout=POLL_SECONDS)["StatusCode"]
                except (
                    requests.exceptions.ReadTimeout,
                    requests.exceptions.ConnectionError,
                ):
                    reason = watch.reason_to_stop()
                    if reason:
                        container.kill()
                        code = container.wait(timeout=60)["StatusCode"]
            reader.join(timeout=10)
            stream.close()
        finally:
            pump.close()
            try:
                container.remove(force=True)
            except docker.errors.DockerException:
                pass
        if reason is None and code != 0:
            reason = f"the pipeline exited with code {code}"
            if code == 137:
                reason += " (killed: out of memory?)"
        return Outcome(code, reason, started, now(), image_id)

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
