"""Many worker hosts: each runner has its queue, a host takes only the work of the
runners it serves, and a host that goes away is noticed by the others, whose
watchers take its runs over: nothing is lost, nothing runs twice.

Hosts are simulated by workers with their own WORKER_HOST, sharing the database,
RabbitMQ, the storage and (as hosts of one site may) the Docker engine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from frontend.core.extensions import db
from frontend.core.models import PipelineSetting
from tests.services import require_slurm
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


def test_a_lost_hosts_runs_are_taken_over_by_another_and_run_once(
    stack_factory,  # noqa: F811
):
    stack = stack_factory(MAX_RUNNING_PER_USER=4, HEARTBEAT_TIMEOUT_SECONDS=6)
    # No beat anywhere: the surviving watcher notices the lost host by itself.
    first = stack.start_worker(concurrency=2, WORKER_HOST="host-a")
    ids = [stack.submit("sleeper", seconds="14", exit_code="0") for _ in range(3)]
    for analysis_id in ids:
        stack.wait(analysis_id, "running")
    deadline = time.monotonic() + 60
    while any(stack.analysis(i).handle is None for i in ids):
        assert time.monotonic() < deadline, "the runs were not launched"
        time.sleep(0.2)
    assert {stack.analysis(i).worker for i in ids} == {"host-a"}
    stack.start_worker(WORKER_HOST="host-b")
    first.kill()  # kill -9 of the whole host: its containers go on in the engine
    killed = time.monotonic()
    while {stack.analysis(i).worker for i in ids} != {"host-b"}:
        # Noticed once host-a's lease is older than the heartbeat timeout, at
        # host-b's next renewal (every eighth of the timeout).
        assert time.monotonic() - killed < 6 + 10, [
            (stack.analysis(i).worker, stack.analysis(i).state.value) for i in ids
        ]
        time.sleep(0.2)
    for analysis_id in ids:
        done = stack.wait(analysis_id, "succeeded", "failed", timeout=90)
        assert done.state.value == "succeeded", done.error_summary
        assert done.attempt == 1 and done.worker == "host-b"
        # It ran once, and its log holds each line once.
        assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"
        log = (stack.output(analysis_id).parent / "log.txt").read_text()
        assert log.count("sleeping") == 1 and log.count("woke up") == 1
    assert stack.leftover_containers() == []
    said = (Path(stack.config["LOG_DIR"]) / "worker.log").read_text()
    assert "Runs of lost hosts" in said


def test_each_host_takes_only_the_runs_of_its_runners(stack_factory):  # noqa: F811
    """A Docker host leaves a Slurm pipeline's run queued; the login node's worker,
    serving only Slurm, takes it and nothing else."""
    require_slurm()
    stack = stack_factory(RUNNER="docker")
    with stack.app.app_context():
        db.session.add(PipelineSetting(name="sleeper", runner="slurm"))
        db.session.commit()
    stack.start_worker(WORKER_HOST="docker-host", WORKER_RUNNERS=["docker"])
    on_cluster = stack.submit("sleeper", seconds="1", exit_code="0")
    in_docker = stack.submit("writer", mode="file", kib="2")
    done = stack.wait(in_docker, "succeeded", "failed")
    assert done.state.value == "succeeded", done.error_summary
    assert (done.runner, done.worker) == ("docker", "docker-host")
    waiting = stack.analysis(on_cluster)
    assert waiting.state.value == "queued" and waiting.runner == "slurm"
    assert waiting.started_at is None  # the Docker host never claimed it
    page = stack.client.get(f"/analyses/{on_cluster}").text
    assert "No worker for the slurm runner is running at the moment" in page
    stack.start_worker(WORKER_HOST="login-node", WORKER_RUNNERS=["slurm"])
    ran = stack.wait(on_cluster, "succeeded", "failed", timeout=120)
    assert ran.state.value == "succeeded", ran.error_summary
    assert (ran.runner, ran.worker) == ("slurm", "login-node")
    assert ran.handle["job_id"].isdigit() and ran.attempt == 1
    # A pipeline moved to another runner: runs already queued keep theirs, new
    # ones go to the new one.
    with stack.app.app_context():
        db.session.get(PipelineSetting, "sleeper").runner = None
        db.session.commit()
    later = stack.submit("sleeper", seconds="0", exit_code="0")
    moved = stack.wait(later, "succeeded", "failed")
    assert (moved.runner, moved.worker) == ("docker", "docker-host")
