"""Runners: the pipeline contract and the launch-and-watch interface, with plain
processes and with real Docker containers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.runners import DockerRunner, LocalRunner, RunSpec, now
from backend.supervision import PROGRESS_LINE_MAX, LogCopy, RunWatch, run_to_end
from tests.conftest import BUSYBOX_IMAGE

PY = sys.executable
MiB = 1024**2


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


def cancel_after(seconds: float):
    started = time.monotonic()
    return lambda: time.monotonic() - started > seconds


# --- Local runner -------------------------------------------------------------------


def test_local_run_records_progress_log_outputs_and_usage(tmp_path):
    script = (
        "import sys\nprint('##progress 25 reading', flush=True)\n"
        "print('plain line')\nopen('result.txt','w').write(sys.argv[1])\n"
        "print('##progress 100 done')"
    )
    spec = spec_for(tmp_path, [PY, "-c", script, "value"])
    ending, watch = run_to_end(LocalRunner(), spec)
    assert ending.reason is None and ending.exit_code == 0
    assert watch.log.progress == (100.0, "done")
    assert "##progress 25 reading\nplain line\n" in spec.log_path.read_text()
    assert (spec.output_dir / "result.txt").read_text() == "value"
    assert watch.usage.peak_memory_bytes > 1 * MiB and watch.usage.cpu_seconds > 0


def test_local_run_failure_timeout_and_cancel(tmp_path):
    runner = LocalRunner()
    failed, _ = run_to_end(runner, spec_for(tmp_path / "a", [PY, "-c", "exit(3)"]))
    assert failed.exit_code == 3 and failed.reason == "the pipeline exited with code 3"
    slow = [PY, "-c", "import time; time.sleep(30)"]
    timed, _ = run_to_end(runner, spec_for(tmp_path / "b", slow, timeout_s=1))
    assert timed.reason == "timed out after 1 s"
    cancelled, _ = run_to_end(runner, spec_for(tmp_path / "c", slow), cancel_after(0.5))
    assert cancelled.reason == "cancelled"


def test_a_local_run_outlives_its_launcher_and_is_launched_once(tmp_path):
    script = "open('runs.txt','a').write('run\\n'); import time; time.sleep(2)"
    spec = spec_for(tmp_path, [PY, "-c", script])
    # Launched by another process that exits at once, as a start task does.
    paths = ", ".join(
        f"pathlib.Path({str(p)!r})"
        for p in (spec.input_dir, spec.output_dir, spec.log_path)
    )
    launcher = (
        "import sys, pathlib; sys.path.insert(0, '.');"
        "from backend.runners import LocalRunner, RunSpec;"
        f"spec = RunSpec(1, {spec.argv!r}, 'x', {paths});"
        "print(LocalRunner().launch(spec).job_id)"
    )
    job = subprocess.run(
        [PY, "-c", launcher],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    ).stdout.strip()
    runner = LocalRunner()
    handle = runner.launch(spec)  # a redelivered start: finds the first
    assert handle.job_id == job
    assert runner.poll(handle).state == "running"
    watch = RunWatch(runner, handle, spec, now())
    while not (status := runner.poll(handle)).ended:
        time.sleep(0.2)
    assert watch.finish(status).reason is None
    assert (spec.output_dir / "runs.txt").read_text() == "run\n"


def test_local_run_output_cap_deleted_open_file_and_flood(tmp_path):
    big = "import time\nopen('big','wb').write(b'x'*3_000_000)\ntime.sleep(10)"
    spec = spec_for(tmp_path / "a", [PY, "-c", big], max_output_bytes=1_000_000)
    ending, _ = run_to_end(LocalRunner(), spec)
    # Python ignores SIGXFSZ: its write fails with "File too large" at the cap.
    assert ending.reason == (
        "an output file reached the 1,000,000 bytes limit; the outputs were deleted"
    )
    assert list(spec.output_dir.iterdir()) == []
    hidden = (  # two files, each under the cap, together over it, both deleted
        "import os,time\nfs=[open(n,'wb') for n in 'ab']\n"
        "[os.remove(n) for n in 'ab']\n"
        "[(f.write(b'x'*300_000), f.flush()) for f in fs]\ntime.sleep(30)"
    )
    spec = spec_for(tmp_path / "b", [PY, "-c", hidden], max_output_bytes=500_000)
    ending, _ = run_to_end(LocalRunner(), spec)
    assert ending.reason == (
        "the outputs grew past the 500,000 bytes limit; the outputs were deleted"
    )
    flood = "while True: print('x' * 1000)"
    spec = spec_for(tmp_path / "c", [PY, "-c", flood], max_log_bytes=100_000)
    ending, _ = run_to_end(LocalRunner(), spec)
    assert ending.reason == "the log grew past the 100,000 bytes limit"


# --- Docker runner ------------------------------------------------------------------


@pytest.mark.docker
def test_container_run_streams_log_progress_outputs_and_usage(docker_client, tmp_path):
    script = (
        "echo '##progress 50 half way'; echo from the container; "
        "cat /data/input/data.txt > /data/output/copy.txt; sleep 1.5; "
        "echo '##progress 100 done'"
    )
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9101)
    runner = DockerRunner(docker_client)
    ending, watch = run_to_end(runner, spec)
    assert ending.reason is None, ending
    assert watch.log.progress == (100.0, "done")
    assert "from the container" in spec.log_path.read_text()
    assert (spec.output_dir / "copy.txt").read_text() == "hello\n"
    assert watch.usage.peak_memory_bytes > 0 and watch.usage.cpu_seconds > 0
    assert 9101 not in dict(runner.jobs())  # cleaned up


@pytest.mark.docker
def test_sandbox_as_docker_inspect_reports_it(docker_client, tmp_path):
    spec = spec_for(
        tmp_path, ["sleep", "30"], analysis_id=9102, cpus=0.5, memory_mb=128, pids=32
    )
    runner = DockerRunner(docker_client)
    handle = runner.launch(spec)
    try:
        seen = docker_client.api.inspect_container(handle.job_id)
    finally:
        runner.cleanup(handle)
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


@pytest.mark.docker
def test_pipeline_cannot_write_inputs_or_root_or_see_a_network(docker_client, tmp_path):
    script = (
        "touch /data/input/x 2>&1; touch /etc/x 2>&1; ls /sys/class/net; "
        "id -u; echo ok > /tmp/t && cat /tmp/t"
    )
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9103)
    ending, _ = run_to_end(DockerRunner(docker_client), spec)
    log = spec.log_path.read_text()
    assert "touch: /data/input/x: Read-only file system" in log
    assert "touch: /etc/x: Read-only file system" in log
    assert log.split("\n")[2:4] == ["lo", "65534"]
    assert "ok" in log  # /tmp is writable
    assert not (tmp_path / "input" / "x").exists()
    assert ending.exit_code == 0


@pytest.mark.docker
def test_container_timeout_failure_and_out_of_memory(docker_client, tmp_path):
    runner = DockerRunner(docker_client)
    timed, _ = run_to_end(
        runner, spec_for(tmp_path / "a", ["sleep", "30"], analysis_id=9104, timeout_s=1)
    )
    assert timed.reason == "timed out after 1 s"
    failed, _ = run_to_end(
        runner, spec_for(tmp_path / "b", ["sh", "-c", "exit 4"], analysis_id=9105)
    )
    assert failed.exit_code == 4 and failed.reason == "the pipeline exited with code 4"
    hungry = ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    oom, _ = run_to_end(
        runner, spec_for(tmp_path / "c", hungry, analysis_id=9106, memory_mb=16)
    )
    assert oom.reason == "it ran out of its 16 MiB memory limit"


@pytest.mark.docker
def test_a_container_killed_or_removed_from_outside_says_so(docker_client, tmp_path):
    runner = DockerRunner(docker_client)
    for number, (act, reason) in enumerate(
        [
            (
                lambda c: docker_client.api.kill(c),
                "it was stopped from outside (killed)",
            ),
            (
                lambda c: docker_client.api.remove_container(c, force=True),
                "the run disappeared: it was removed from outside the queue",
            ),
        ]
    ):
        spec = spec_for(tmp_path / str(number), ["sleep", "30"], analysis_id=9107)
        handle = runner.launch(spec)
        threading.Timer(1, act, args=[handle.job_id]).start()
        watch = RunWatch(runner, handle, spec, now())
        while not (status := runner.poll(handle)).ended:
            watch.copy_log()
            time.sleep(0.2)
        assert watch.finish(status).reason == reason
        runner.cleanup(handle)


@pytest.mark.docker
def test_launching_twice_starts_one_container(docker_client, tmp_path):
    script = "echo run >> /data/output/runs.txt; echo first; sleep 2"
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9108)
    runner = DockerRunner(docker_client)
    first = runner.launch(spec)
    again = DockerRunner(docker_client).launch(spec)  # a redelivered start task
    assert again.job_id == first.job_id
    assert [job for aid, job in runner.jobs() if aid == 9108] == [first.job_id]
    # A start redelivered after the run ended (its first worker was killed
    # before recording the launch) finds the exited container: not run again.
    while not runner.poll(first).ended:
        time.sleep(0.2)
    late = DockerRunner(docker_client).launch(spec)
    assert late.job_id == first.job_id and runner.poll(late).ended
    ending, _ = run_to_end(runner, spec)  # finds it once more, and follows it
    assert ending.reason is None
    assert (spec.output_dir / "runs.txt").read_text() == "run\n"
    # One only created by a launch that died before starting it is started.
    quick = spec_for(tmp_path / "b", ["sh", "-c", script], analysis_id=9109)
    created = runner.create(quick)
    assert runner.launch(quick).job_id == created
    ending, _ = run_to_end(runner, quick)
    assert (quick.output_dir / "runs.txt").read_text() == "run\n"


def _build_labelled(client, tag: str, build: int) -> str:
    import io

    dockerfile = f"FROM {BUSYBOX_IMAGE}\nLABEL build={build}\n"
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True
    )
    return image.id


@pytest.mark.docker
def test_runs_start_from_the_image_found_and_a_rebuild_is_seen(docker_client, tmp_path):
    from backend.runners import ImageMissing

    tag = "labqueue-test/rebuilt:1"
    runner = DockerRunner(docker_client)
    first_id = _build_labelled(docker_client, tag, 1)
    try:
        assert runner.image_problem(tag) is None
        first = runner.launch(spec_for(tmp_path / "a", ["true"], image=tag))
        # The run's record names the very image its container was made from.
        container = docker_client.api.inspect_container(first.job_id)
        assert container["Image"] == first_id == runner.image_id(tag)
        runner.cleanup(first)
        # Rebuilt under the same name and the old image removed, within the time a
        # start trusts its last look: the next run finds the new one.
        second_id = _build_labelled(docker_client, tag, 2)
        docker_client.images.remove(first_id, force=True)
        assert runner.image_problem(tag, max_age=60) is None  # trusted, not asked
        second = runner.launch(spec_for(tmp_path / "b", ["true"], image=tag))
        container = docker_client.api.inspect_container(second.job_id)
        assert container["Image"] == second_id == runner.image_id(tag)
        runner.cleanup(second)
        docker_client.images.remove(tag, force=True)
        with pytest.raises(ImageMissing, match=f"the image {tag} is not on this"):
            runner.launch(spec_for(tmp_path / "c", ["true"], image=tag))
    finally:
        for image in (tag, first_id):
            try:
                docker_client.images.remove(image, force=True)
            except Exception:  # noqa: S110 (removed by the test already)
                pass


@pytest.mark.docker
def test_a_new_watcher_goes_on_from_the_recorded_offset(docker_client, tmp_path):
    script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done"
    spec = spec_for(tmp_path, ["sh", "-c", script], analysis_id=9109)
    first = DockerRunner(docker_client)
    handle = first.launch(spec)
    watch = RunWatch(first, handle, spec, now())
    while b"line 2" not in spec.log_path.read_bytes():
        watch.copy_log()
        time.sleep(0.1)
    offset = watch.offset  # what the database holds when the watcher dies
    watch.log.close()
    with spec.log_path.open("ab") as log:
        log.write(b"half a line the old watcher wrote")
    first.release(handle)
    second = DockerRunner(docker_client)
    watch = RunWatch(second, handle, spec, now(), log_offset=offset)
    while not (status := second.poll(handle)).ended:
        watch.copy_log()
        time.sleep(0.1)
    assert watch.finish(status).reason is None
    second.cleanup(handle)
    assert spec.log_path.read_text() == "".join(f"line {i}\n" for i in range(1, 7))


@pytest.mark.docker
def test_sites_sharing_an_engine_leave_each_other_alone(docker_client, tmp_path):
    ours, theirs = (
        DockerRunner(docker_client, "ours"),
        DockerRunner(docker_client, "theirs"),
    )
    handle = theirs.launch(spec_for(tmp_path, ["sleep", "30"], analysis_id=9110))
    try:
        assert 9110 not in dict(ours.jobs())
        assert 9110 in dict(theirs.jobs())
    finally:
        theirs.cleanup(handle)
    assert 9110 not in dict(theirs.jobs())


# --- Caps: outputs (however written) and the log ------------------------------------


@pytest.mark.docker
def test_an_output_burst_between_checks_still_fails(docker_client, tmp_path):
    # 200 files of 1 MiB written in a burst, then the run ends before a periodic
    # check can see them; and a single file past the cap is stopped at it.
    script = (
        "for i in $(seq 200); do head -c 1048576 /dev/zero > /data/output/f$i; done"
    )
    spec = spec_for(
        tmp_path, ["sh", "-c", script], analysis_id=9111, max_output_bytes=50 * MiB
    )
    ending, _ = run_to_end(DockerRunner(docker_client), spec)
    assert ending.reason == (
        "the outputs grew past the 50 MiB limit; the outputs were deleted"
    )
    assert list(spec.output_dir.iterdir()) == []
    one_file = "dd if=/dev/zero of=/data/output/big.bin bs=1M count=200 2>&1"
    spec = spec_for(
        tmp_path / "one",
        ["sh", "-c", one_file],
        analysis_id=9115,
        max_output_bytes=50 * MiB,
    )
    ending, _ = run_to_end(DockerRunner(docker_client), spec)
    assert ending.reason == (
        "an output file reached the 50 MiB limit; the outputs were deleted"
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
    ending, _ = run_to_end(DockerRunner(docker_client), spec)
    assert ending.reason == (
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
    ending, _ = run_to_end(DockerRunner(docker_client), spec)
    assert ending.reason == "the log grew past the 4 MiB limit"
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
    ending, watch = run_to_end(DockerRunner(docker_client), spec)
    assert ending.reason is None, ending
    log = spec.log_path.read_bytes()
    assert log.count(b"a") >= 32 * MiB
    assert log.endswith(b"after the long line\n##progress 100 done\n")
    assert watch.log.progress == (100.0, "done")


def test_the_log_copy_keeps_no_more_than_a_progress_line(tmp_path):
    log = LogCopy(tmp_path / "log.txt", 64 * MiB)
    chunk = b"x" * 65536
    for _ in range(512):  # a 32 MiB line, as a container's log stream delivers it
        log.feed(chunk)
        assert len(log.line) <= PROGRESS_LINE_MAX  # nothing grows with the line
    log.feed(b"\n##progress 40 ")
    log.feed(b"halfway\n")
    log.close()
    assert log.progress == (40.0, "halfway")
    assert (tmp_path / "log.txt").stat().st_size == 32 * MiB + 23


# --- The Slurm runner's reading of the cluster's accounting -------------------------


def fake_slurm(folder: Path, sacct: str | None, usage: str = "") -> str:
    """A PATH where ``scontrol`` no longer knows any job (past MinJobAge) and
    ``sacct`` prints ``sacct`` for a job's state, ``usage`` when asked for its
    MaxRSS (None: accounting is off, as sacct says)."""
    folder.mkdir()
    (folder / "scontrol").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\n"
        "exit 1\n"
    )
    if sacct is None:
        body = "echo 'Slurm accounting storage is disabled' >&2\nexit 1\n"
    else:
        body = (
            f"case \"$*\" in *MaxRSS*) cat <<'END'\n{usage}\nEND\n;;\n"
            f"*) cat <<'END'\n{sacct}\nEND\n;;\nesac\n"
        )
    (folder / "sacct").write_text("#!/bin/sh\n" + body)
    for tool in ("scontrol", "sacct"):
        (folder / tool).chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


@pytest.mark.parametrize(
    ("sacct", "state", "reason", "exit_code"),
    [
        (
            # The limit the cluster held (raised by its admins), not the run's.
            "4242|TIMEOUT|0:15|00:05:00\n4242.batch|CANCELLED|0:15|",
            "exited",
            "the cluster stopped it at its time limit of 5 min",
            None,
        ),
        (
            "4242|CANCELLED by 1001|0:0|00:02:00",
            "exited",
            "it was cancelled on the cluster, outside Labqueue",
            None,
        ),
        ("4242|FAILED|3:0|00:02:00\n4242.batch|FAILED|3:0|", "exited", None, 3),
        (None, "missing", None, None),  # no accounting: the job disappeared
    ],
)
def test_a_slurm_job_the_controller_forgot_is_read_from_the_accounting(
    tmp_path, monkeypatch, sacct, state, reason, exit_code
):
    from backend.runners.base import Handle
    from backend.runners.slurm import SlurmRunner

    work = tmp_path / "run"
    work.mkdir()
    (work / "limits.json").write_text('{"timeout_s": 120, "memory_mb": 64}')
    monkeypatch.setenv("PATH", fake_slurm(tmp_path / "bin", sacct))
    runner = SlurmRunner(site="t", template="apptainer exec {image} {argv}")
    status = runner.poll(Handle("slurm", "4242", "login", str(work)))
    assert (status.state, status.reason, status.exit_code) == (
        state,
        reason,
        exit_code,
    )


def test_a_slurm_jobs_usage_comes_from_the_accounting_once_it_ended(
    tmp_path, monkeypatch
):
    from backend.runners.base import Handle, Usage
    from backend.runners.slurm import SlurmRunner

    work = tmp_path / "run"
    work.mkdir()
    lines = "4242|COMPLETED|0:0|00:02:00"
    usage = (
        "4242||01:02:03.500\n4242.batch|1.50G|01:02:03.500\n"
        "4242.extern|2348K|00:00:00.001"
    )
    monkeypatch.setenv("PATH", fake_slurm(tmp_path / "bin", lines, usage))
    handle = Handle("slurm", "4242", "login", str(work))
    apptainer = SlurmRunner(site="t", template="apptainer exec {image} {argv}")
    assert apptainer.usage(handle) == Usage()  # not ended yet: nothing asked
    assert apptainer.poll(handle).state == "exited"
    assert apptainer.usage(handle) == Usage(int(1.5 * 1024**3), 3723.5)
    # With Docker on the nodes the job's processes are the client's: not taken.
    docker = SlurmRunner(site="t")
    docker.poll(handle)
    assert docker.usage(handle) == Usage()
