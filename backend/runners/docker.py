"""The Docker runner: each run is a detached, sandboxed container.

``launch`` creates and starts ``labqueue-<site>-analysis-<id>-<attempt>`` and returns
at once; the name makes a second launch of the same run find the first container
instead of starting another. ``read_log`` serves the container's output from any
byte offset: a follower thread per container streams the engine's log into a
bounded buffer. Usage comes from the container's cgroup files (v1 or v2), or from the
engine's one-shot stats where those are not visible.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import safe_open
from .base import (
    CONTAINER_OUTPUT,
    CONTAINER_TMP,
    EngineUnavailable,
    Handle,
    ImageMissing,
    LaunchFailed,
    LogChunk,
    RunSpec,
    Status,
    Usage,
    binds,
    owner_of,
    unlinked_bytes,
)

LABEL = "labqueue.analysis"
SITE_LABEL = "labqueue.site"
ATTEMPT_LABEL = "labqueue.attempt"
FOLLOWER_BUFFER = 8 * 1024**2  # unread output held per run before reading pauses
READ_LIMIT = 4 * 1024**2  # at most this much per read_log call
ROTATED_NOTE = (
    b"\n[Labqueue: the engine rotated its copy of this log while it was being read;"
    b" some output is missing here]\n"
)
MAX_POOL = 1024  # one connection per followed container, and some
# How the engine's container list words a clean exit ("Exited (0) 2 seconds ago").
EXITED_0 = re.compile(r"Exited \(0\) ")


def _not_allowed(socket_path: str) -> str:
    """Why this process may not use the engine's socket, and the mend."""
    try:
        group = os.stat(socket_path).st_gid
    except OSError:
        return f"this process may not use {socket_path}"
    return (
        f"this process (user {os.getuid()}, groups "
        f"{', '.join(map(str, sorted(os.getgroups())))}) may not use {socket_path}, "
        f"which belongs to group {group}: add the process to group {group} "
        f"(Docker Compose: DOCKER_GID={group} in .env, then up -d)"
    )


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
        except PermissionError as exc:
            raise EngineUnavailable(_not_allowed(host.removeprefix("unix://"))) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise EngineUnavailable(f"nothing answers at {host} ({reason})") from exc
    try:
        client = docker.from_env(timeout=timeout, max_pool_size=MAX_POOL)
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(str(exc)) from exc
    if host.startswith("unix://"):
        _share_one_pool(client, host.removeprefix("unix://"), timeout)
    return client


def _share_one_pool(client, socket_path: str, timeout: int) -> None:
    """The SDK's Unix socket adapter keeps a connection pool per request URL, and
    a container's id is in its URLs: every container would cost a new socket and
    a new pool (it keeps the 25 latest). One pool for the engine keeps its
    connections alive from call to call."""
    from docker.transport import UnixHTTPAdapter

    class OnePoolAdapter(UnixHTTPAdapter):
        def get_connection(self, url, proxies=None):
            return super().get_connection("http+docker://localhost", proxies)

    adapter = OnePoolAdapter(
        "http+unix://" + socket_path, timeout, max_pool_size=MAX_POOL
    )
    client.api.mount("http+docker://", adapter)
    # No proxy stands between a process and a Unix socket: requests need not
    # read the proxy variables of the environment on every call.
    client.api.trust_env = False


def _close_stream(stream) -> None:
    """Close an engine stream, also when it is being read from another thread. The
    SDK's close shuts the socket but leaves the response's file open (a socket
    that is never released): close the response too."""
    try:
        stream.close()
    except Exception:  # noqa: S110 (closing what may be half-closed)
        pass
    response = getattr(stream, "_response", None)
    if response is not None:
        try:
            response.close()
        except Exception:  # noqa: S110
            pass


class _Follower:
    """Streams one container's output, from its first byte, into a buffer that
    ``read`` serves from an offset; bytes below the last offset asked for are
    dropped, and reading pauses while FOLLOWER_BUFFER bytes wait unread."""

    def __init__(
        self,
        client,
        container_id: str,
        skip: int = 0,
        on_end=None,
        since: float | None = None,
        after: int = 0,
        note: bytes = b"",
    ):
        # ``since``, ``after`` and ``note``: going on from another follower whose
        # stream the engine ended early, at byte ``after``, with ``note`` first.
        self.client, self.container_id = client, container_id
        self.on_end = on_end
        self.since = since
        self.buffer = bytearray()
        self.received = after  # bytes of output seen so far, kept or not
        self.discard_below = skip
        self.done = False
        self.failed = False
        self.closed = False
        self.stream = None
        self.lock = threading.Condition()
        self.note = note  # said before the first byte this stream brings, if any
        self.thread = threading.Thread(
            target=self._run, daemon=True, name="log-follower"
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            self._follow(self.since)
        except Exception:  # the engine went away or the container was removed
            self.failed = True
        finally:
            with self.lock:
                self.done = True
                self.lock.notify_all()
            if self.on_end is not None and not self.closed:
                self.on_end()

    def _follow(self, since: float | None) -> None:
        stream = self.client.api.logs(
            self.container_id,
            stdout=True,
            stderr=True,
            stream=True,
            follow=True,
            since=since,
        )
        with self.lock:
            self.stream = stream
            if self.closed:
                _close_stream(stream)
        for chunk in stream:
            if self.note:
                self._add(self.note)
                self.note = b""
            if not self._add(chunk):
                break
        _close_stream(stream)

    def _add(self, chunk: bytes) -> bool:
        """Keep ``chunk`` (unless it is below the offset asked for); False once
        closed."""
        with self.lock:
            while len(self.buffer) > FOLLOWER_BUFFER and not self.closed:
                self.lock.wait(1)
            if self.closed:
                return False
            start = self.received
            self.received += len(chunk)
            if self.received <= self.discard_below:
                return True
            if start < self.discard_below:
                chunk = chunk[self.discard_below - start :]
            self.buffer += chunk
            return True

    def ended_early(self, offset: int) -> bool:
        """Whether the stream ended cleanly and everything up to it was read."""
        with self.lock:
            return self.done and not self.failed and offset >= self.received

    def read(self, offset: int) -> LogChunk:
        with self.lock:
            self.discard_below = max(self.discard_below, offset)
            buffered_from = self.received - len(self.buffer)
            if offset > buffered_from:
                del self.buffer[: offset - buffered_from]
            data = bytes(self.buffer[:READ_LIMIT])
            complete = self.done and not self.failed and len(data) == len(self.buffer)
            self.lock.notify_all()
        return LogChunk(data, offset + len(data), complete)

    def close(self) -> None:
        """Stop following; a read waiting on the engine is cut short."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()
            stream = self.stream
        if stream is not None:
            _close_stream(stream)
        if threading.current_thread() is not self.thread:
            # Done with the engine before its client may be closed.
            self.thread.join(5)


def cgroup_paths(pid: int) -> dict[str, str]:
    """A process's cgroup path per controller ("" for the unified hierarchy)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        _number, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


class _Cgroup:
    """A container's cgroup files on this host, when this worker can see them."""

    def __init__(self, paths: dict[str, str]):
        self.memory = self.cpu = self.procs = None
        self.v2 = False
        root = Path("/sys/fs/cgroup")
        unified = root / paths.get("", "/").lstrip("/")
        if (unified / "cgroup.procs").exists() and (unified / "cpu.stat").exists():
            self.v2 = True
            peak = unified / "memory.peak"
            self.memory = peak if peak.exists() else unified / "memory.current"
            self.cpu, self.procs = unified / "cpu.stat", unified / "cgroup.procs"
            return
        for controller, attribute, name in (
            ("memory", "memory", "memory.max_usage_in_bytes"),
            ("cpuacct", "cpu", "cpuacct.usage"),
            ("pids", "procs", "cgroup.procs"),
        ):
            if controller in paths:
                candidate = root / controller / paths[controller].lstrip("/") / name
                if candidate.exists():
                    setattr(self, attribute, candidate)

    def usage(self) -> Usage | None:
        if self.memory is None or self.cpu is None:
            return None
        try:
            memory = int(self.memory.read_text())
            text = self.cpu.read_text()
        except (OSError, ValueError):
            return None
        if self.v2:
            fields = dict(line.split() for line in text.splitlines() if line)
            cpu = int(fields.get("usage_usec", 0)) / 1e6
        else:
            cpu = int(text) / 1e9
        return Usage(memory, cpu)

    def pids(self) -> list[int] | None:
        if self.procs is None:
            return None
        try:
            return [int(line) for line in self.procs.read_text().split()]
        except (OSError, ValueError):
            return None


class DockerRunner:
    """Runs each pipeline in a detached, sandboxed container."""

    name = "docker"
    sandboxed = True
    containers = True
    cluster_accounts = False
    host_bound = False

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], site: str, host: str
    ) -> DockerRunner:
        """Raises EngineUnavailable when no engine answers: never a fallback."""
        return cls(site=site, host=host)

    def __init__(self, client=None, site: str = "default", host: str = ""):
        self.owns_client = client is None
        self.client = client or docker_client()
        # Several Labqueue sites may share one engine: names and labels carry the
        # site, and each site only ever touches its own containers.
        self.site = site
        self.host = host or socket.gethostname()
        self._followers: dict[str, _Follower] = {}
        self._cgroups: dict[str, _Cgroup] = {}
        # Image name → (id, when it was looked up): runs are created from the id,
        # so the id on a run's record is the image it ran.
        self._image_ids: dict[str, tuple[str, float]] = {}
        # Whether each container was running when last polled.
        self._running: dict[str, bool] = {}
        # Where the engine puts a container's cgroups, "{id}" for its id.
        self._cgroup_layout: dict[str, str] | None = None
        self._lock = threading.Lock()
        # Called when a followed container's output ends (it has exited), so that
        # its watcher looks at once rather than at its next tick.
        self.on_output_end = None

    def close(self) -> None:
        with self._lock:
            for follower in self._followers.values():
                follower.close()
            self._followers.clear()
        if self.owns_client:
            self.client.close()

    def image_problem(self, image: str, max_age: float = 0) -> str | None:
        """Why ``image`` cannot run here (for admins), or None when it can. With
        ``max_age``, an image found that many seconds ago or less counts as found
        without asking the engine again (a launch that then misses it looks
        again)."""
        import docker.errors

        known = self._image_ids.get(image)
        if known and max_age and time.monotonic() - known[1] <= max_age:
            return None
        try:
            found = self.client.api.inspect_image(image)["Id"]
        except docker.errors.ImageNotFound:
            self._image_ids.pop(image, None)
            return f"the image {image} is not on this host's Docker engine"
        self._image_ids[image] = (found, time.monotonic())
        return None

    def image_id(self, image: str) -> str | None:
        """The id of the image a run of ``image`` uses (for its record)."""
        if image not in self._image_ids and self.image_problem(image) is not None:
            return None
        return self._image_ids[image][0]

    def container_name(self, analysis_id: int, attempt: int = 1) -> str:
        return f"labqueue-{self.site}-analysis-{analysis_id}-{attempt}"

    # --- launch ------------------------------------------------------------------

    def create(self, spec: RunSpec) -> str:
        """Create the run's container (not started); returns its id."""
        import docker.types

        # A root worker hands the output folder to the container's user; it can
        # still read and delete what the pipeline writes.
        safe_open.ensure_folder(spec.output_dir, owner_of(spec.user))
        # No file may grow more than a byte past the output cap, so the size check
        # sees any attempt; the engine keeps a bounded log of its own.
        file_cap = spec.max_output_bytes + 1
        api = self.client.api
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[docker.types.Ulimit(name="fsize", soft=file_cap, hard=file_cap)],
            log_config=docker.types.LogConfig(
                type="json-file",
                # The engine stores each line as JSON, several times its size:
                # room for the capped log and a flood between two looks at it.
                config={"max-size": f"{(10 * spec.max_log_bytes) // 1024 + 32768}k"},
            ),
            mem_limit=f"{spec.memory_mb}m",
            memswap_limit=f"{spec.memory_mb}m",
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            tmpfs={CONTAINER_TMP: f"rw,noexec,nosuid,size={spec.tmpfs_mb}m"},
            binds=binds(spec),
        )
        created = api.create_container(
            self.image_id(spec.image) or spec.image,
            command=spec.argv,
            name=self.container_name(spec.analysis_id, spec.attempt),
            labels={
                LABEL: str(spec.analysis_id),
                SITE_LABEL: self.site,
                ATTEMPT_LABEL: str(spec.attempt),
            },
            user=spec.user,
            working_dir=CONTAINER_OUTPUT,
            environment={
                "HOME": CONTAINER_TMP,
                "TMPDIR": CONTAINER_TMP,
                "MPLBACKEND": "Agg",
            },
            host_config=host_config,
        )
        return created["Id"]

    def _inspect(self, spec: RunSpec) -> dict | None:
        """The engine's view of this run's container, if one was created already."""
        import docker.errors

        try:
            return self.client.api.inspect_container(
                self.container_name(spec.analysis_id, spec.attempt)
            )
        except docker.errors.NotFound:
            return None

    def find(self, spec: RunSpec) -> Handle | None:
        """The container of this run if one was created already."""
        found = self._inspect(spec)
        if found is None:
            return None
        return Handle(self.name, found["Id"], self.host, str(spec.work_dir))

    def launch(self, spec: RunSpec) -> Handle:
        """Start the run's container (or find the one a first launch made) and
        return without waiting for it. Raises LaunchFailed (ImageMissing when the
        image is not on the host)."""
        import docker.errors

        try:
            try:
                container_id, never_started = self._create_once(spec), True
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: the name exists, this run is there
                    raise
                found = self._inspect(spec)
                if found is None:
                    raise
                container_id = found["Id"]
                # Started once already (running, or it ran and exited: starting
                # it again would run the pipeline twice), or only created by a
                # first launch that died before starting it.
                never_started = found["State"]["Status"] == "created"
            if never_started:
                self.client.api.start(container_id)
        except docker.errors.DockerException as exc:
            raise LaunchFailed(str(exc)) from exc
        return Handle(self.name, container_id, self.host, str(spec.work_dir))

    def _create_once(self, spec: RunSpec) -> str:
        """``create``; if the image id known here has gone (the image was rebuilt
        and the old one removed), look the image up again and create from that."""
        import docker.errors

        try:
            return self.create(spec)
        except docker.errors.ImageNotFound:
            problem = self.image_problem(spec.image)
            if problem:
                raise ImageMissing(problem) from None
            return self.create(spec)

    # --- watch -------------------------------------------------------------------

    def poll(self, handle: Handle) -> Status:
        import docker.errors

        try:
            state = self.client.api.inspect_container(handle.job_id)["State"]
        except docker.errors.NotFound:
            return Status("missing")
        self._running[handle.job_id] = state["Status"] in ("created", "running")
        if state["Status"] == "removing":
            # Removed from outside: a forced removal kills first, and the exit it
            # causes is not the run's own.
            return Status("missing")
        if state["Status"] in ("created", "running", "paused", "restarting"):
            return Status("running")
        return Status("exited", state.get("ExitCode"), bool(state.get("OOMKilled")))

    def poll_many(self, handles: list[Handle]) -> dict[str, Status]:
        """Every handle's status, with one listing call (and one inspection per
        container that has ended)."""
        listed = {
            entry["Id"]: (entry["State"], entry.get("Status", ""))
            for entry in self.client.api.containers(
                all=True, filters={"label": [f"{SITE_LABEL}={self.site}"]}
            )
        }
        found = {}
        for handle in handles:
            state, status = listed.get(handle.job_id, (None, ""))
            self._running[handle.job_id] = state in ("created", "running")
            if state in ("created", "running", "paused", "restarting"):
                found[handle.job_id] = Status("running")
            elif state == "exited" and EXITED_0.match(status):
                # A clean exit says all there is to say: no inspection needed.
                found[handle.job_id] = Status("exited", 0, False)
            else:  # ended otherwise, or not listed: ask about this one
                found[handle.job_id] = self.poll(handle)
        return found

    def read_log(self, handle: Handle, offset: int) -> LogChunk:
        """The run's output from byte ``offset`` (what has arrived; never waits)."""
        with self._lock:
            follower = self._followers.get(handle.job_id)
            if follower is None or follower.failed:
                # New, or the stream broke (the engine restarted): follow from the
                # start again, keeping nothing below the offset.
                follower = _Follower(
                    self.client, handle.job_id, skip=offset, on_end=self.on_output_end
                )
                self._followers[handle.job_id] = follower
            elif self._running.get(handle.job_id) and follower.ended_early(offset):
                # The engine ended the stream while the container runs: it rotated
                # its copy of the log. Follow on from now, and say what was lost.
                follower = _Follower(
                    self.client,
                    handle.job_id,
                    skip=offset,
                    on_end=self.on_output_end,
                    since=time.time(),
                    after=follower.received,
                    note=ROTATED_NOTE,
                )
                self._followers[handle.job_id] = follower
        return follower.read(offset)

    def cancel(self, handle: Handle) -> None:
        import docker.errors

        try:
            self.client.api.kill(handle.job_id)
        except docker.errors.APIError:
            pass  # gone already, or not running any more

    def _cgroup(self, handle: Handle) -> _Cgroup | bool:
        """The container's cgroup files (some may not be visible to this worker),
        or False when the container has no process (it ended, or never started).

        The engine puts every container's cgroup at the same place but for its id:
        once one container's paths are known, the next ones' are found without
        asking the engine for their process."""
        import docker.errors

        container = handle.job_id
        if container in self._cgroups:
            return self._cgroups[container]
        if self._running.get(container) is False:
            return False  # seen ended: its cgroup has gone, nothing to ask about
        if self._cgroup_layout:
            paths = {
                controller: path.replace("{id}", container)
                for controller, path in self._cgroup_layout.items()
            }
            cgroup = _Cgroup(paths)
            if not cgroup.pids():
                return False  # no processes there: not started, or ended
            self._cgroups[container] = cgroup
            return cgroup
        try:
            pid = self.client.api.inspect_container(container)["State"]["Pid"]
        except docker.errors.DockerException:
            return False
        if not pid:
            return False
        paths = cgroup_paths(pid)
        if paths and all(container in path for path in paths.values()):
            self._cgroup_layout = {
                controller: path.replace(container, "{id}")
                for controller, path in paths.items()
            }
        self._cgroups[container] = _Cgroup(paths)
        return self._cgroups[container]

    def usage(self, handle: Handle) -> Usage:
        """Peak memory and CPU time so far (an empty Usage once it has ended)."""
        import docker.errors

        cgroup = self._cgroup(handle)
        if cgroup is False:
            return Usage()  # nothing runs: the engine's stats would be empty too
        found = cgroup.usage()
        if found is not None:
            return found
        if cgroup.memory is not None and cgroup.cpu is not None:
            return Usage()  # its cgroup was seen and has gone: it has just ended
        try:
            stats = self.client.api.stats(handle.job_id, stream=False, one_shot=True)
        except docker.errors.DockerException:
            return Usage()
        memory = stats.get("memory_stats") or {}
        cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
        peak = memory.get("max_usage") or memory.get("usage")
        total = cpu.get("total_usage")
        return Usage(peak, total / 1e9 if total else None)

    def unlinked_output_bytes(self, handle: Handle) -> int:
        """Deleted-but-open output files of the container's processes (needs this
        worker in the host's PID namespace; elsewhere it counts nothing)."""
        import docker.errors

        cgroup = self._cgroup(handle)
        if cgroup is False:
            return 0
        pids = cgroup.pids()
        if pids is None:
            try:
                table = self.client.api.top(handle.job_id, ps_args="-eo pid")
            except docker.errors.DockerException:
                return 0
            rows = table.get("Processes") or []
            pids = [int(row[0]) for row in rows if row and row[0].isdigit()]
        return unlinked_bytes(pids, CONTAINER_OUTPUT)

    def release(self, handle: Handle) -> None:
        """Stop following the run (another watcher has it); the run goes on."""
        with self._lock:
            follower = self._followers.pop(handle.job_id, None)
        if follower:
            follower.close()
        self._cgroups.pop(handle.job_id, None)
        self._running.pop(handle.job_id, None)

    def cleanup(self, handle: Handle) -> None:
        """Forget the run and remove its container."""
        import docker.errors

        self.release(handle)
        try:
            self.client.api.remove_container(handle.job_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    # --- housekeeping ------------------------------------------------------------

    def jobs(self) -> list[tuple[int, str]]:
        """(analysis id, container id) of every container of this site."""
        found = []
        for entry in self.client.api.containers(
            all=True, filters={"label": [LABEL, f"{SITE_LABEL}={self.site}"]}
        ):
            try:
                found.append((int(entry["Labels"][LABEL]), entry["Id"]))
            except (KeyError, ValueError):
                continue
        return found


__all__ = ["DockerRunner", "LaunchFailed", "docker_client"]
