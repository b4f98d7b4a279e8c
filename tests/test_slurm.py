"""The Slurm runner on a real one-node cluster (tests/slurm/start), running its
jobs' containers on the real Docker engine: how runs end, and what the researcher
is told."""

from __future__ import annotations

import pwd
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.runners.slurm import SlurmRunner
from backend.supervision import run_to_end
from frontend.core.extensions import db
from frontend.core.models import Analysis, User
from tests.conftest import csrf_token
from tests.services import require_slurm
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)
from tests.test_runners import spec_for

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.rabbitmq]


@pytest.fixture
def runner(docker_client):
    require_slurm()
    return SlurmRunner(site="slurmtest")


def job_field(job_id: str, name: str) -> str:
    """A field of ``scontrol show job`` ("" once the controller forgot the job)."""
    shown = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
    ).stdout
    return shown.split(f"{name}=")[1].split()[0] if f"{name}=" in shown else ""


def job_state(job_id: str) -> str:
    return job_field(job_id, "JobState")


def wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def test_a_job_runs_in_the_sandbox_with_its_log_and_outputs(runner, tmp_path):
    argv = [
        "sh",
        "-c",
        "echo '##progress 50 half way'; id -u; wc -c < /data/input/data.txt; "
        "touch /etc/x 2>/dev/null || echo read-only; echo done > /data/output/a.txt",
    ]
    ending, watch = run_to_end(runner, spec_for(tmp_path, argv, analysis_id=9201))
    assert ending.exit_code == 0 and ending.reason is None
    log = (tmp_path / "log.txt").read_text()
    assert "65534\n6\nread-only\n" in log  # not root, the input, a read-only root
    assert (tmp_path / "output" / "a.txt").read_text() == "done\n"
    assert watch.log.progress == (50.0, "half way")
    assert runner.jobs() == []  # cleaned up: nothing of this site left queued


def test_exit_codes_and_memory_are_told_in_words(runner, tmp_path):
    failed, _ = run_to_end(
        runner, spec_for(tmp_path / "a", ["sh", "-c", "exit 4"], analysis_id=9202)
    )
    assert failed.reason == "the pipeline exited with code 4"
    hungry = ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    oom, _ = run_to_end(
        runner, spec_for(tmp_path / "b", hungry, analysis_id=9203, memory_mb=16)
    )
    assert oom.reason == "it ran out of its 16 MiB memory limit"


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("scancel", "it was cancelled on the cluster, outside Labqueue"),
        ("time limit", "the cluster stopped it at its time limit"),
    ],
)
def test_the_clusters_own_endings_say_what_happened(runner, tmp_path, action, words):
    """scancel from outside, and a time limit the cluster enforces (lowered here
    with scontrol, as an admin or a partition's MaxTime would)."""
    number = 9210 if action == "scancel" else 9211
    spec = spec_for(tmp_path, ["sleep", "120"], analysis_id=number)
    handle = runner.launch(spec)
    try:
        wait_for(lambda: job_state(handle.job_id) == "RUNNING")
        wait_for(lambda: (tmp_path / "run" / "output.log").exists())
        if action == "scancel":
            subprocess.run(["scancel", handle.job_id], check=True)
        else:
            subprocess.run(
                ["scontrol", "update", f"JobId={handle.job_id}", "TimeLimit=00:00:01"],
                check=True,
            )
        wait_for(lambda: runner.poll(handle).ended, timeout=120)
        status = runner.poll(handle)
        assert status.reason and status.reason.startswith(words), status
    finally:
        runner.cleanup(handle)
    # The container went with the job.
    wait_for(lambda: not [c for c in runner_containers() if f"-{number}-" in c], 30)


def runner_containers() -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    )
    return listed.stdout.split()


def test_a_pending_or_running_job_is_cancelled_and_a_second_launch_finds_the_first(
    runner, tmp_path
):
    # Hold the node's two CPUs, so that the run waits in the cluster's queue.
    blocker = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--cpus-per-task=2",
            "--output=/dev/null",  # not a slurm-N.out in the working folder
            "--wrap",
            "sleep 120",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        wait_for(lambda: job_state(blocker) == "RUNNING")
        spec = spec_for(tmp_path / "a", ["sleep", "60"], analysis_id=9220)
        handle = runner.launch(spec)
        assert runner.launch(spec) == handle  # the same run is one job
        wait_for(lambda: job_state(handle.job_id) == "PENDING")
        assert runner.poll(handle).state == "running"
        assert runner.poll_many([handle]) == {handle.job_id: runner.poll(handle)}
        runner.cancel(handle)
        wait_for(lambda: runner.poll(handle).ended)
        runner.cleanup(handle)
    finally:
        subprocess.run(["scancel", blocker], check=False)
    ending, _ = run_to_end(
        runner,
        spec_for(tmp_path / "b", ["sleep", "60"], analysis_id=9221),
        should_cancel=lambda: (tmp_path / "b" / "run" / "output.log").exists(),
    )
    assert ending.reason == "cancelled"
    assert not [c for c in runner_containers() if "analysis-9221-" in c]


def test_the_job_script_quotes_what_it_runs(tmp_path):
    runner = SlurmRunner(site="s")
    spec = spec_for(tmp_path, ["sh", "-c", "echo 'a b'; rm -rf $HOME"], analysis_id=3)
    script = runner.job_script(spec)
    assert "'echo '\"'\"'a b'\"'\"'; rm -rf $HOME'" in script
    assert "--network none --read-only --cap-drop ALL" in script
    assert f"--volume {Path(tmp_path) / 'input'}:/data/input:ro" in script


# --- Through the web app: RUNNER = "slurm" ------------------------------------------


@pytest.fixture
def cluster_stack(stack_factory):  # noqa: F811
    require_slurm()
    return stack_factory(RUNNER="slurm")


def no_container_of(stack, analysis_id: int) -> bool:
    """Whether the engine holds no container of this stack's run (another
    deployment's run of the same number is not this one)."""
    from frontend.core.runners import site_id

    with stack.app.app_context():
        prefix = f"labqueue-{site_id()}-analysis-{analysis_id}-"
    return not [name for name in runner_containers() if name.startswith(prefix)]


def test_runs_submitted_on_the_web_go_through_the_cluster(cluster_stack):
    stack = cluster_stack
    stack.start_worker()
    good = stack.submit("writer", mode="file", kib="3")
    bad = stack.submit("sleeper", seconds="0", exit_code="3")
    done = stack.wait(good, "succeeded", "failed")
    assert done.state.value == "succeeded", done.error_summary
    assert done.runner == "slurm" and done.handle["job_id"].isdigit()
    assert (stack.output(good) / "out.bin").stat().st_size == 3072
    assert "3+0 records out" in (stack.output(good).parent / "log.txt").read_text()
    failed = stack.wait(bad, "failed", "succeeded")
    assert failed.exit_code == 3 and "exited with code 3" in failed.error_summary
    snapshot = Path(stack.config["FAILED_ANALYSES_DIR"]) / str(bad)
    assert "woke up" in (snapshot / "log.txt").read_text()
    wait_for(lambda: no_container_of(stack, good) and no_container_of(stack, bad), 30)


def test_a_worker_killed_while_its_job_runs_is_followed_by_the_next(cluster_stack):
    stack = cluster_stack
    worker = stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="8", exit_code="0")
    wait_for(lambda: stack.analysis(analysis_id).handle is not None)
    job = stack.analysis(analysis_id).handle["job_id"]
    worker.kill()  # kill -9: the job goes on in the cluster
    assert job_state(job) in ("PENDING", "RUNNING")
    stack.start_worker()
    done = stack.wait(analysis_id, "succeeded", "failed", timeout=120)
    assert done.state.value == "succeeded", done.error_summary
    assert done.attempt == 1 and done.handle["job_id"] == job  # picked up by id
    assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"  # once


def test_a_run_cancelled_on_the_web_leaves_the_cluster(cluster_stack):
    stack = cluster_stack
    stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="120", exit_code="0")
    wait_for(lambda: "sleeping" in stack.analysis(analysis_id).progress_message)
    job = stack.analysis(analysis_id).handle["job_id"]
    page = stack.client.get(f"/analyses/{analysis_id}")
    stack.client.post(
        f"/analyses/{analysis_id}/cancel", data={"csrf_token": csrf_token(page.text)}
    )
    done = stack.wait(analysis_id, "cancelled", "failed", "succeeded", timeout=60)
    assert done.state.value == "cancelled"
    assert job_state(job) in ("", "CANCELLED", "COMPLETED")
    wait_for(lambda: no_container_of(stack, analysis_id), 30)


def failure_told(stack, analysis_id: int, words: str) -> None:
    """The run failed for ``words``: on its page, in its snapshot, container gone."""
    done = stack.wait(analysis_id, "failed", "succeeded", "cancelled", timeout=150)
    assert done.state.value == "failed"
    assert done.error_summary.startswith(words), done.error_summary
    assert words in stack.client.get(f"/analyses/{analysis_id}").text
    snapshot = Path(stack.config["FAILED_ANALYSES_DIR"]) / str(analysis_id)
    assert words.lower() in (snapshot / "error.json").read_text().lower()
    wait_for(lambda: no_container_of(stack, analysis_id), 30)


@pytest.mark.parametrize(
    ("action", "words"),
    [
        ("scancel", "It was cancelled on the cluster, outside Labqueue"),
        # Lowered by the cluster's admins while it runs (Slurm keeps minutes): the
        # limit it had then, not the run's own 10 min.
        ("time limit", "The cluster stopped it at its time limit of 1 min"),
    ],
)
def test_the_clusters_endings_reach_the_researcher(cluster_stack, action, words):
    stack = cluster_stack
    stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="120", exit_code="0")
    wait_for(lambda: "sleeping" in stack.analysis(analysis_id).progress_message)
    job = stack.analysis(analysis_id).handle["job_id"]
    if action == "scancel":
        subprocess.run(["scancel", job], check=True)
    else:
        change = ["scontrol", "update", f"JobId={job}", "TimeLimit=00:00:01"]
        subprocess.run(change, check=True)
    failure_told(stack, analysis_id, words)


def test_a_run_over_its_memory_is_told_so(cluster_stack):
    stack = cluster_stack
    stack.start_worker()
    analysis_id = stack.submit("writer", mode="memory", kib="0")
    failure_told(stack, analysis_id, "It ran out of its 64 MiB memory limit")


def hold_the_node(seconds: int) -> str:
    """A job of no analysis taking both of the node's CPUs for ``seconds``."""
    job = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=2", "--output=/dev/null"]
        + ["--wrap", f"sleep {seconds}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    wait_for(lambda: job_state(job) == "RUNNING")
    return job


def page_of(stack, analysis_id: int) -> str:
    return stack.client.get(f"/analyses/{analysis_id}").text


def test_runs_waiting_in_the_clusters_queue_say_so_and_their_clock_waits(
    stack_factory,  # noqa: F811
):
    """A job may wait in the cluster's queue longer than it may run: its time
    limit counts from its start. One waiting run is cancelled on the web."""
    require_slurm()
    stack = stack_factory(RUNNER="slurm", MAX_RUN_MINUTES=0.1)  # 6 s
    stack.start_worker()
    blocker = hold_the_node(20)
    try:
        waits = stack.submit("sleeper", seconds="1", exit_code="0")
        dropped = stack.submit("sleeper", seconds="60", exit_code="0")
        queued = "waiting in the cluster&#39;s queue: "
        reasons = {
            waits: "the nodes it needs are busy",
            dropped: "jobs of a higher priority are ahead of it",  # behind the first
        }
        for analysis_id, why in reasons.items():
            said = queued + why.replace("'", "&#39;")
            wait_for(lambda i=analysis_id, s=said: s in page_of(stack, i))
        job = stack.analysis(dropped).handle["job_id"]
        assert job_state(job) == "PENDING"
        page = stack.client.get(f"/analyses/{dropped}")
        stack.client.post(
            f"/analyses/{dropped}/cancel", data={"csrf_token": csrf_token(page.text)}
        )
        done = stack.wait(dropped, "cancelled", "failed", "succeeded", timeout=60)
        assert done.state.value == "cancelled"
        assert job_state(job) in ("", "CANCELLED")  # it never ran
        time.sleep(8)  # longer than the 6 s it may run, still waiting
        assert stack.analysis(waits).state.value == "running"
    finally:
        subprocess.run(["scancel", blocker], check=False)
    done = stack.wait(waits, "succeeded", "failed", timeout=120)
    assert done.state.value == "succeeded", done.error_summary
    assert (stack.output(waits) / "runs.txt").read_text() == "run\n"
    assert not (stack.output(dropped) / "runs.txt").exists()


def test_a_site_template_gets_the_runs_binds_and_command(tmp_path):
    runner = SlurmRunner(
        site="s",
        template=(
            "apptainer exec --containall {binds=--bind} docker-daemon://{image} {argv}"
        ),
    )
    spec = spec_for(tmp_path, ["echo", "hi"], analysis_id=4, image="lab/qc:1")
    assert runner.container_command(spec) == (
        f"apptainer exec --containall --bind {tmp_path / 'output'}:/data/output:rw "
        f"--bind {tmp_path / 'input'}:/data/input:ro docker-daemon://lab/qc:1 echo hi"
    )
    assert runner.image_problem("lab/qc:1") is None  # found by the job itself


# --- Submitted as the user's own cluster account ------------------------------------

CLUSTER_ACCOUNT = "lq-ada"
CTLD_LOG = Path("/var/log/slurm-labqueue-ctld.log")  # tests/slurm/slurm.conf


@pytest.fixture
def cluster_account(tmp_path):
    """A cluster account for Ada, in the docker group (the nodes' container engine
    here), able to reach the test's folders as a site's shared filesystem lets
    its users reach Labqueue's."""
    require_slurm()
    if subprocess.run(["id", CLUSTER_ACCOUNT], capture_output=True).returncode:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            + ["--groups", "docker", CLUSTER_ACCOUNT],
            check=True,
        )
    for folder in [tmp_path, *tmp_path.parents][:-1]:
        subprocess.run(
            ["setfacl", "-m", f"u:{CLUSTER_ACCOUNT}:x", str(folder)], check=True
        )
    return pwd.getpwnam(CLUSTER_ACCOUNT)


def job_user(job_id: str) -> str:
    return job_field(job_id, "UserId").split("(")[0]  # "lq-ada(1001)"


def test_jobs_are_submitted_and_cancelled_as_the_users_cluster_account(
    stack_factory,  # noqa: F811
    cluster_account,
):
    stack = stack_factory(RUNNER="slurm", SLURM_SUBMIT_AS="user")
    # No account mapped yet: the form says so and nothing is queued.
    url = f"/projects/{stack.project}/run/writer"
    form = stack.client.get(url).text
    assert "none is set for you yet" in form  # before the form is filled in
    reply = stack.client.post(
        url, data={"p_mode": "file", "p_kib": "2", "csrf_token": csrf_token(form)}
    )
    assert reply.status_code == 409
    assert "none is set for you yet" in reply.text
    assert "Nothing was submitted" in reply.text
    with stack.app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Analysis.id))) == 0
        db.session.get(User, stack.user_id).cluster_account = CLUSTER_ACCOUNT
        db.session.commit()
    stack.start_worker()
    good = stack.submit("writer", mode="file", kib="2")
    long = stack.submit("sleeper", seconds="120", exit_code="0")
    done = stack.wait(good, "succeeded", "failed")
    assert done.state.value == "succeeded", done.error_summary
    assert job_user(done.handle["job_id"]) == CLUSTER_ACCOUNT
    written = stack.output(good) / "out.bin"
    assert written.stat().st_size == 2048
    assert written.stat().st_uid == cluster_account.pw_uid  # the account's file
    wait_for(lambda: "sleeping" in stack.analysis(long).progress_message)
    job = stack.analysis(long).handle["job_id"]
    assert job_user(job) == CLUSTER_ACCOUNT
    page = stack.client.get(f"/analyses/{long}")
    stack.client.post(
        f"/analyses/{long}/cancel", data={"csrf_token": csrf_token(page.text)}
    )
    stopped = stack.wait(long, "cancelled", "failed", "succeeded", timeout=60)
    assert stopped.state.value == "cancelled"
    # scancel ran as the account that submitted it.
    said = CTLD_LOG.read_text()
    assert f"REQUEST_KILL_JOB JobId={job} uid {cluster_account.pw_uid}" in said
    wait_for(lambda: no_container_of(stack, long), 30)
