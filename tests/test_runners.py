"""Runners: the pipeline contract, locally and in real Docker containers."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from backend.runners import DockerRunner, Hooks, LocalRunner, RunSpec
from tests.conftest import BUSYBOX_IMAGE


def spec_for(tmp_path: Path, argv: list[str], **kw) -> RunSpec:
    inputs = tmp_path / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "data.txt").write_text("hello\n")
    return RunSpec(
        analysis_id=kw.pop("analysis_id", 1),
        argv=argv,
        image=kw.pop("image", BUSYBOX_IMAGE),
        input_dir=inputs,
        output_dir=tmp_path / "output",
        log_path=tmp_path / "log.txt",
        **kw,
    )


class Recorder(Hooks):
    def __init__(self, cancel_after: float | None = None):
        self.progress: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self.cancel_after = cancel_after
        super().__init__(
            on_progress=lambda p, m: self.progress.append((p, m)),
            should_cancel=self._cancel,
        )

    def _cancel(self) -> bool:
        return (
            self.cancel_after is not None
            and time.monotonic() - self.started > self.cancel_after
        )


# --- Local runner -------------------------------------------------------------------

PY = sys.executable


def test_local_run_records_progress_log_and_outputs(tmp_path):
    script = (
        "import sys\nprint('##progress 25 reading', flush=True)\n"
        "print('plain line')\nopen('result.txt','w').write(sys.argv[1])\n"
        "print('##progress 100 done')"
    )
    spec = spec_for(tmp_path, [PY, "-c", script, "value"])
    hooks = Recorder()
    outcome = LocalRunner().run(spec, hooks)
    assert outcome.succeeded
    assert hooks.progress == [(25.0, "reading"), (100.0, "done")]
    assert "plain line" in spec.log_path.read_text()
    assert (spec.output_dir / "result.txt").read_text() == "value"


def test_local_run_failure_timeout_and_cancel(tmp_path):
    failed = LocalRunner().run(
        spec_for(tmp_path / "a", [PY, "-c", "raise SystemExit(3)"]), Recorder()
    )
    assert failed.exit_code == 3 and "exited with code 3" in failed.reason
    slow = [PY, "-c", "import time; time.sleep(30)"]
    timed = LocalRunner().run(spec_for(tmp_path / "b", slow, timeout_s=1), Recorder())
    assert timed.reason == "timed out after 1 s"
    cancelled = LocalRunner().run(spec_for(tmp_path / "c", slow), Recorder(0.5))
    assert cancelled.reason == "cancelled"


def test_local_run_output_cap(tmp_path):
    script = "import time\nopen('big','wb').write(b'x'*3_000_000)\ntime.sleep(10)"
    spec = spec_for(tmp_path, [PY, "-c", script], max_output_bytes=1_000_000)
    outcome = LocalRunner().run(spec, Recorder())
    assert "outputs grew past" in outcome.reason


# --- Docker runner ------------------------------------------------------------------


@pytest.mark.docker
def test_container_run_streams_log_progress_and_outputs(docker_client, tmp_path):
    script = (
        "echo '##progress 50 half way'; echo from the container; "
        "cat /data/input/data.txt > /data/output/copy.txt; "
        "echo '##progress 100 done'"
    )
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9101)
    hooks = Recorder()
    outcome = DockerRunner(docker_client).run(spec, hooks)
    assert outcome.succeeded, outcome.reason
    assert hooks.progress == [(50.0, "half way"), (100.0, "done")]
    assert "from the container" in spec.log_path.read_text()
    assert (spec.output_dir / "copy.txt").read_text() == "hello\n"
    assert outcome.image_id.startswith("sha256:")
    assert DockerRunner(docker_client).running_analyses().get(9101) is None


@pytest.mark.docker
def test_sandbox_as_docker_inspect_reports_it(docker_client, tmp_path):
    spec = spec_for(
        tmp_path, ["sleep", "30"], analysis_id=9102, cpus=0.5, memory_mb=128, pids=32
    )
    runner = DockerRunner(docker_client)
    seen = {}

    def inspect_then_cancel():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not seen:
            try:
                container = docker_client.containers.get(runner.container_name(9102))
                if container.status == "running":
                    seen.update(container.attrs)
            except Exception:  # noqa: S110 (not created yet)
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=inspect_then_cancel)
    watcher.start()
    hooks = Recorder()
    hooks.should_cancel = lambda: bool(seen)
    outcome = runner.run(spec, hooks)
    watcher.join()
    host = seen["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 128 * 1024**2
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 32
    assert seen["Config"]["User"] == "65534:65534"
    mounts = {m["Destination"]: m["RW"] for m in seen["Mounts"]}
    assert mounts == {"/data/input": False, "/data/output": True}
    assert outcome.reason == "cancelled"


@pytest.mark.docker
def test_pipeline_cannot_write_inputs_or_root_or_see_a_network(docker_client, tmp_path):
    script = (
        "touch /data/input/x 2>&1; touch /etc/x 2>&1; ls /sys/class/net; "
        "id -u; echo ok > /tmp/t && cat /tmp/t"
    )
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9103)
    outcome = DockerRunner(docker_client).run(spec, Recorder())
    log = spec.log_path.read_text()
    assert "touch: /data/input/x: Read-only file system" in log
    assert "touch: /etc/x: Read-only file system" in log
    assert log.split("\n")[2:4] == ["lo", "65534"]
    assert "ok" in log  # /tmp is writable
    assert not (tmp_path / "input" / "x").exists()
    assert outcome.exit_code == 0


@pytest.mark.docker
def test_container_timeout_and_failure(docker_client, tmp_path):
    runner = DockerRunner(docker_client)
    timed = runner.run(
        spec_for(tmp_path / "a", ["sleep", "30"], analysis_id=9104, timeout_s=1),
        Recorder(),
    )
    assert timed.reason == "timed out after 1 s"
    failed = runner.run(
        spec_for(tmp_path / "b", ["sh", "-c", "exit 4"], analysis_id=9105), Recorder()
    )
    assert failed.exit_code == 4 and "exited with code 4" in failed.reason


@pytest.mark.docker
def test_a_redelivered_run_reattaches_instead_of_starting_twice(
    docker_client, tmp_path
):
    script = "echo first; sleep 2; echo '##progress 100 done'"
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9106)
    runner = DockerRunner(docker_client)
    runner.create(spec).start()  # the run a dead worker left behind
    hooks = Recorder()
    outcome = runner.run(spec, hooks)
    assert outcome.succeeded
    assert spec.log_path.read_text().count("first") == 1
    assert hooks.progress == [(100.0, "done")]
    assert 9106 not in runner.running_analyses()


@pytest.mark.docker
def test_sites_sharing_an_engine_leave_each_other_alone(docker_client, tmp_path):
    ours, theirs = (
        DockerRunner(docker_client, "ours"),
        DockerRunner(docker_client, "theirs"),
    )
    spec = spec_for(tmp_path, ["sleep", "30"], analysis_id=9107)
    theirs.create(spec)
    try:
        assert 9107 not in ours.running_analyses()
        ours.remove([9107])
        assert 9107 in theirs.running_analyses()
    finally:
        theirs.remove([9107])
    assert 9107 not in theirs.running_analyses()


# --- Caps: outputs (however written) and the log ------------------------------------

MiB = 1024**2


@pytest.mark.docker
def test_an_output_burst_between_checks_still_fails(docker_client, tmp_path):
    # 200 MiB written and gone in well under a second: no periodic check sees it.
    script = "dd if=/dev/zero of=/data/output/burst.bin bs=1M count=200 2>&1"
    spec = spec_for(
        tmp_path, ["sh", "-c", script], analysis_id=9111, max_output_bytes=50 * MiB
    )
    outcome = DockerRunner(docker_client).run(spec, Recorder())
    assert outcome.reason == (
        "the outputs grew past the 50 MiB limit; the outputs were deleted"
    )
    assert list(spec.output_dir.iterdir()) == []


@pytest.mark.docker
def test_a_deleted_but_open_output_file_counts(docker_client, tmp_path):
    script = (
        "exec 3>/data/output/hidden.bin; rm /data/output/hidden.bin; "
        "dd if=/dev/zero bs=1M count=100 >&3 2>/dev/null; echo written; sleep 60"
    )
    spec = spec_for(
        tmp_path, ["sh", "-c", script], analysis_id=9112, max_output_bytes=50 * MiB
    )
    started = time.monotonic()
    outcome = DockerRunner(docker_client).run(spec, Recorder())
    assert outcome.reason == (
        "the outputs grew past the 50 MiB limit; the outputs were deleted"
    )
    assert time.monotonic() - started < 50  # stopped, not slept out
    assert "written" in spec.log_path.read_text()
    assert list(spec.output_dir.iterdir()) == []


@pytest.mark.docker
def test_a_stdout_flood_is_cut_at_the_log_cap(docker_client, tmp_path):
    script = "while true; do echo 'a line of output that never ends'; done"
    spec = spec_for(
        tmp_path, ["sh", "-c", script], analysis_id=9113, max_log_bytes=4 * MiB
    )
    outcome = DockerRunner(docker_client).run(spec, Recorder())
    assert outcome.reason == "the log grew past the 4 MiB limit"
    log = spec.log_path.read_bytes()
    assert 4 * MiB <= len(log) < 4 * MiB + 200
    assert log.rstrip().endswith(b"the run was stopped]")


@pytest.mark.docker
def test_a_32_mib_line_is_logged_whole_with_what_follows(docker_client, tmp_path):
    script = (
        "head -c 33554432 /dev/zero | tr '\\0' a; echo; "
        "echo 'after the long line'; echo '##progress 100 done'"
    )
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9114)
    hooks = Recorder()
    outcome = DockerRunner(docker_client).run(spec, hooks)
    assert outcome.succeeded, outcome.reason
    log = spec.log_path.read_bytes()
    assert log.count(b"a") >= 32 * MiB
    assert log.endswith(b"after the long line\n##progress 100 done\n")
    assert hooks.progress == [(100.0, "done")]


def test_the_log_pump_keeps_no_more_than_a_progress_line(tmp_path):
    from backend.runners import PROGRESS_LINE_MAX, _LogPump

    hooks = Recorder()
    pump = _LogPump(tmp_path / "log.txt", hooks, 64 * MiB)
    chunk = b"x" * 65536
    for _ in range(512):  # a 32 MiB line, as a container's log stream delivers it
        pump.feed(chunk)
        assert len(pump.line) <= PROGRESS_LINE_MAX  # nothing grows with the line
    pump.feed(b"\n##progress 40 ")
    pump.feed(b"halfway\n")
    pump.close()
    assert hooks.progress == [(40.0, "halfway")]
    assert (tmp_path / "log.txt").stat().st_size == 32 * MiB + 23


def test_local_run_deleted_open_file_and_flood(tmp_path):
    hidden = (
        "import os,time\nf=open('hidden','wb')\nos.remove('hidden')\n"
        "f.write(b'x'*3_000_000)\nf.flush()\ntime.sleep(30)"
    )
    spec = spec_for(tmp_path / "a", [PY, "-c", hidden], max_output_bytes=1_000_000)
    outcome = LocalRunner().run(spec, Recorder())
    # Python ignores SIGXFSZ: its write fails with "File too large" at the cap.
    assert outcome.reason == (
        "an output file reached the 1,000,000 bytes limit; the outputs were deleted"
    )
    flood = "while True: print('x' * 1000)"
    spec = spec_for(tmp_path / "b", [PY, "-c", flood], max_log_bytes=100_000)
    assert LocalRunner().run(spec, Recorder()).reason == (
        "the log grew past the 100,000 bytes limit"
    )
