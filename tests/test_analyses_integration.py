"""Analyses end to end: the web form, RabbitMQ, a real worker process, Docker
containers, the SMTP server. Each test starts its own worker on its own queue."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker.errors
import flask_migrate
import pytest

from frontend import create_app
from frontend.core.extensions import db
from frontend.core.models import FINISHED_STATES, Analysis, User, utcnow
from frontend.core.runners import site_id
from frontend.core.security import security
from tests.conftest import (
    PASSWORD,
    TEST_PIPELINES,
    Auth,
    base_config,
    csrf_token,
    upload,
)
from tests.services import require_rabbitmq
from tests.workers import Worker

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]
DATA = Path(__file__).parent / "data"


class Stack:
    """An app, a signed-in client with a project, and a worker, sharing one config."""

    def __init__(self, tmp_path, smtp, images, project="Data", **overrides):
        from flask_security import hash_password

        self.config = {
            **base_config(tmp_path, smtp),
            "CELERY_BROKER_URL": require_rabbitmq(),
            "CELERY_RESULT_BACKEND": "",
            "CELERY_QUEUE": f"q-{uuid.uuid4().hex}",
            "RUNNER": "docker",
            "PIPELINES_DIR": str(TEST_PIPELINES),
            "HEARTBEAT_TIMEOUT_SECONDS": 4,
            "SITE_URL": "http://labqueue.test",
            "TRUSTED_HOSTS": ["localhost"],  # the test client's host
            **overrides,
        }
        self.app = create_app(self.config)
        with self.app.app_context():
            flask_migrate.upgrade()
            user = security.datastore.create_user(
                email="ada@cs.ox.ac.uk",
                password=hash_password(PASSWORD),
                first_name="Ada",
                confirmed_at=utcnow(),
            )
            db.session.commit()
            self.user_id = user.id
            self.site = site_id()
        self.client = self.app.test_client()
        Auth(self.client).login("ada@cs.ox.ac.uk")
        self.project = None
        if project is not None:  # None: a new site, as a README reader has it
            page = self.client.get("/projects/new")
            reply = self.client.post(
                "/projects/new",
                data={"name": project, "csrf_token": csrf_token(page.text)},
            )
            self.project = int(reply.headers["Location"].rsplit("/", 1)[1])
        self.workers: list[Worker] = []
        self.docker = images

    def start_worker(
        self, concurrency: int = 1, beat: bool = False, **overrides
    ) -> Worker:
        """A worker on the stack's settings; ``overrides`` make it another host
        (WORKER_HOST) or one serving other runners (WORKER_RUNNERS)."""
        worker = Worker({**self.config, **overrides}, concurrency, beat)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def submit(self, pipeline: str, **fields) -> int:
        url = f"/projects/{self.project}/run/{pipeline}"
        page = self.client.get(url)
        data = {f"p_{k}": v for k, v in fields.items()}
        reply = self.client.post(
            url, data={**data, "csrf_token": csrf_token(page.text)}
        )
        assert reply.status_code == 302, reply.text
        return int(reply.headers["Location"].rsplit("/", 1)[1])

    def analysis(self, analysis_id: int) -> Analysis:
        with self.app.app_context():
            row = db.session.get(Analysis, analysis_id)
            db.session.expunge(row)
            return row

    def wait(self, analysis_id: int, *states: str, timeout: float = 120) -> Analysis:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.analysis(analysis_id)
            if row.state.value in states:
                return row
            time.sleep(0.3)
        raise AssertionError(f"#{analysis_id} is {row.state.value}, not {states}")

    def containers(self, analysis_id: int | None = None) -> list:
        """This stack's containers on the engine (of one analysis, when given);
        other tests running beside it have their own site and are left alone."""
        label = "labqueue.analysis"
        if analysis_id is not None:
            label += f"={analysis_id}"
        labels = [label, f"labqueue.site={self.site}"]
        # The watcher removes ended containers as it goes: one may vanish
        # between the engine's listing and its inspection.
        return self.docker.containers.list(
            all=True, filters={"label": labels}, ignore_removed=True
        )

    def leftover_containers(self, timeout: float = 20) -> list:
        """The containers still there once the watcher's clean-up had its time
        (containers are removed after the run is recorded, off its path)."""
        deadline = time.monotonic() + timeout
        while (left := self.containers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not left:
            return []
        # Say what is left and what the worker said about it.
        log = Path(self.config["LOG_DIR"]) / "worker.log"
        said = log.read_text() if log.exists() else ""
        return [
            f"{c.name} ({c.status}, analysis {c.labels.get('labqueue.analysis')}, "
            f"site {c.labels.get('labqueue.site')}): "
            + " | ".join(line for line in said.splitlines() if c.id in line)
            for c in left
        ]

    def output(self, analysis_id: int) -> Path:
        root = (
            Path(self.config["USER_DATA_DIR"]) / str(self.user_id) / str(self.project)
        )
        return root / "analyses" / str(analysis_id) / "output"

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        # A watcher tick that fails delays every run on its host: none may.
        log = Path(self.config["LOG_DIR"]) / "worker.log"
        said = log.read_text() if log.exists() else ""
        assert "Watcher tick failed" not in said, said[said.find("Watcher tick") :]
        celery = self.app.extensions["celery"]
        celery.close()
        for container in self.containers():
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture
def stack_factory(tmp_path, smtp, images, database_url):
    smtp.clear()
    stacks = []

    def make(**overrides) -> Stack:
        overrides.setdefault("SQLALCHEMY_DATABASE_URI", database_url)
        stack = Stack(tmp_path, smtp, images, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def test_table_profiler_from_the_web_form_to_the_email(stack_factory, smtp):
    from backend.manifest import PIPELINES_DIR

    stack = stack_factory(PIPELINES_DIR=str(PIPELINES_DIR))
    upload(
        stack.client,
        stack.project,
        "expression.csv",
        (DATA / "expression.csv").read_bytes(),
    )
    stack.start_worker()
    analysis_id = stack.submit(
        "table-profiler", tables=["expression.csv"], bins="15", max_rows="0"
    )
    assert stack.analysis(analysis_id).state.value in ("queued", "running")
    done = stack.wait(analysis_id, "succeeded", "failed")
    assert done.state.value == "succeeded", done.error_summary
    assert done.progress_percent == 100 and done.attempt == 1
    assert done.started_at and done.finished_at and done.exit_code == 0
    outputs = stack.output(analysis_id)
    assert (outputs / "summary.csv").exists()
    assert (outputs / "expression.csv_histograms.png").exists()
    page = stack.client.get(f"/analyses/{analysis_id}").text
    assert "expression.csv: 40 rows, 9 columns" in page  # from the log
    assert "summary.csv" in page
    mail = smtp.wait_for("ada@cs.ox.ac.uk", "table-profiler on Data finished")
    assert f"http://labqueue.test/analyses/{analysis_id}" in mail.get_content()
    assert stack.leftover_containers() == []


def test_failure_keeps_a_snapshot_and_tells_the_user(stack_factory, smtp):
    stack = stack_factory()
    upload(stack.client, stack.project, "notes.txt", b"input data")
    stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="0", exit_code="3")
    failed = stack.wait(analysis_id, "failed", "succeeded")
    assert failed.state.value == "failed"
    assert failed.exit_code == 3
    assert "exited with code 3" in failed.error_summary
    snapshot = Path(stack.config["FAILED_ANALYSES_DIR"]) / str(analysis_id)
    error = json.loads((snapshot / "error.json").read_text())
    assert error["exit_code"] == 3 and error["image_id"].startswith("sha256:")
    assert error["worker"] and error["duration_s"] is not None
    assert json.loads((snapshot / "params.json").read_text())["exit_code"] == 3
    assert "woke up" in (snapshot / "log.txt").read_text()
    inputs = json.loads((snapshot / "inputs.json").read_text())
    assert inputs[0]["path"] == "notes.txt" and len(inputs[0]["sha256"]) == 64
    page = stack.client.get(f"/analyses/{analysis_id}").text
    assert "The analysis failed." in page and "exited with code 3" in page
    smtp.wait_for("ada@cs.ox.ac.uk", "sleeper on Data failed")


def test_timeout_kills_the_run(stack_factory):
    stack = stack_factory(MAX_RUN_MINUTES=0.05)  # 3 s
    stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="60", exit_code="0")
    failed = stack.wait(analysis_id, "failed", "succeeded", timeout=60)
    assert failed.error_summary == "Timed out after 3 s."
    assert stack.leftover_containers() == []


def test_cancel_running_and_queued(stack_factory):
    stack = stack_factory(MAX_RUNNING_PER_USER=1)
    stack.start_worker(concurrency=2)
    first = stack.submit("sleeper", seconds="120", exit_code="0")
    stack.wait(first, "running")
    second = stack.submit("sleeper", seconds="1", exit_code="0")
    time.sleep(2)
    assert stack.analysis(second).state.value == "queued"  # held by the limit
    queue = stack.client.get("/analyses/").text
    assert "position 1 in the queue" in queue

    token = csrf_token(stack.client.get(f"/analyses/{second}").text)
    stack.client.post(f"/analyses/{second}/cancel", data={"csrf_token": token})
    assert stack.analysis(second).state.value == "cancelled"
    stack.client.post(f"/analyses/{first}/cancel", data={"csrf_token": token})
    stopped = stack.wait(first, "cancelled", "failed", "succeeded", timeout=30)
    assert stopped.state.value == "cancelled"
    time.sleep(3)
    never = stack.analysis(second)
    assert never.state.value == "cancelled" and never.started_at is None
    assert not stack.output(second).exists() or not any(stack.output(second).iterdir())
    assert stack.leftover_containers() == []


def test_killed_worker_run_ends_and_leaves_no_container(stack_factory):
    stack = stack_factory()
    worker = stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="8", exit_code="0")
    stack.wait(analysis_id, "running")
    time.sleep(1)
    worker.kill()  # kill -9: the row says running, the container goes on
    assert stack.analysis(analysis_id).state.value == "running"
    stack.start_worker()  # its watcher takes the dead one's place at once
    done = stack.wait(analysis_id, "succeeded", "failed", timeout=90)
    assert done.state.value == "succeeded", done.error_summary
    assert done.attempt == 1
    # Followed to its end where the dead watcher left it: it ran once, and its
    # log holds each line once.
    assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"
    log = (stack.output(analysis_id).parent / "log.txt").read_text()
    assert log.count("sleeping") == 1 and log.count("woke up") == 1
    assert stack.leftover_containers() == []


def consumer_timeout(ms: int) -> None:
    subprocess.run(
        [
            "rabbitmqctl",
            "eval",
            f"application:set_env(rabbit, consumer_timeout, {ms}).",
        ],
        check=True,
        capture_output=True,
    )


def test_consumer_timeout_never_ends_a_worker_with_long_runs_and_a_queue(
    stack_factory,
):
    """Two 75 s runs hold both slots and ten wait behind them, on a node whose
    consumer_timeout is 5 s: no delivery waits unacknowledged, because the queue
    is the database and no task waits for a run."""
    consumer_timeout(5000)
    try:
        stack = stack_factory(MAX_RUNNING=2)
        worker = stack.start_worker()  # its channels open under the lowered timeout
        ids = [stack.submit("sleeper", seconds="75", exit_code="0") for _ in "ab"]
        ids += [stack.submit("sleeper", seconds="1", exit_code="0") for _ in range(10)]
        for analysis_id in ids:
            done = stack.wait(analysis_id, "succeeded", "failed", timeout=240)
            assert done.state.value == "succeeded" and done.attempt == 1
            assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"
        assert worker.process.poll() is None, "the worker died"
        said = worker.output_path.read_text() + worker.log.read_text()
        assert "PRECONDITION_FAILED" not in said and "Unrecoverable" not in said
    finally:
        consumer_timeout(1_800_000)


def test_user_concurrency_limit_queues_instead_of_refusing(stack_factory):
    stack = stack_factory(MAX_RUNNING_PER_USER=1)
    stack.start_worker(concurrency=2)
    first = stack.submit("sleeper", seconds="3", exit_code="0")
    second = stack.submit("sleeper", seconds="0", exit_code="0")
    stack.wait(first, "running")
    assert stack.analysis(second).state.value == "queued"
    done = stack.wait(second, "succeeded", timeout=60)
    assert done.started_at >= stack.analysis(first).finished_at
    with stack.app.app_context():
        assert db.session.get(User, stack.user_id).email == "ada@cs.ox.ac.uk"


def own_sleeper(tmp_path: Path, docker) -> tuple[Path, str]:
    """A pipelines folder holding the sleeper under an image tag of its own, built."""
    from backend.images import build_pipeline_image
    from backend.manifest import load_pipeline
    from tests.conftest import BUSYBOX_IMAGE

    root = tmp_path / "own-pipelines"
    shutil.copytree(TEST_PIPELINES / "sleeper", root / "sleeper")
    manifest = root / "sleeper" / "manifest.toml"
    tag = f"labqueue-test/vanishing-{uuid.uuid4().hex[:8]}"
    manifest.write_text(
        manifest.read_text().replace('"labqueue-test/sleeper"', f'"{tag}"')
    )
    build_pipeline_image(docker, load_pipeline(root / "sleeper"), BUSYBOX_IMAGE)
    return root, f"{tag}:1"


def wait_for_page(client, url: str, text: str, present=True, timeout=30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.get(url).text
        if (text in page) == present:
            return page
        time.sleep(0.5)
    raise AssertionError(f"{url}: {text!r} {'never' if present else 'still'} shown")


def test_a_removed_image_makes_the_pipeline_unavailable(
    stack_factory, images, tmp_path, smtp
):
    from backend.images import build_pipeline_image
    from backend.manifest import load_pipeline
    from tests.conftest import BUSYBOX_IMAGE

    pipelines, tag = own_sleeper(tmp_path, images)
    stack = stack_factory(
        PIPELINES_DIR=str(pipelines),
        IMAGE_CHECK_SECONDS=1,
        CELERY_EXTRA={"beat_schedule_filename": str(tmp_path / "beat-schedule")},
    )
    stack.start_worker(beat=True)
    form = f"/projects/{stack.project}/run/sleeper"
    unavailable = "cannot run at the moment"
    assert unavailable not in stack.client.get(form).text
    try:
        images.images.remove(tag, force=True)
        # The workers' periodic check notices; the form says so and is disabled.
        wait_for_page(stack.client, form, unavailable)
        choose = stack.client.get(f"/projects/{stack.project}/run").text
        assert "Unavailable" in choose and "Set up a run" not in choose
        token = csrf_token(stack.client.get(form).text)
        refused = stack.client.post(
            form, data={"p_seconds": "0", "p_exit_code": "0", "csrf_token": token}
        )
        assert refused.status_code == 503
        assert "Nothing was submitted." in refused.text
        with stack.app.app_context():
            assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0
        alert = smtp.wait_for("admins@example.org", "Labqueue error")
        assert f"the image {tag} is not on this host" in alert.get_content()
    finally:
        sleeper = load_pipeline(pipelines / "sleeper")
        build_pipeline_image(images, sleeper, BUSYBOX_IMAGE)
    # Back on the engine: offered again without a restart, and it runs.
    wait_for_page(stack.client, form, unavailable, present=False)
    analysis_id = stack.submit("sleeper", seconds="0", exit_code="0")
    assert stack.wait(analysis_id, "succeeded", "failed").state.value == "succeeded"
    images.images.remove(tag, force=True)


def test_a_run_whose_image_vanished_fails_in_plain_words(
    stack_factory, images, tmp_path, smtp
):
    pipelines, tag = own_sleeper(tmp_path, images)
    stack = stack_factory(PIPELINES_DIR=str(pipelines))
    stack.start_worker()  # checks the images at start: all there
    images.images.remove(tag, force=True)  # behind the last check's back
    analysis_id = stack.submit("sleeper", seconds="0", exit_code="0")
    failed = stack.wait(analysis_id, "failed", "succeeded")
    assert failed.error_summary == (
        "This pipeline is not installed on the server at the moment, so the run "
        "could not start; the administrators have been told."
    )
    page = stack.client.get(f"/analyses/{analysis_id}").text
    for internal in ("http+docker", "localhost", "labqueue-", tag, "404"):
        assert internal not in page, internal
    alert = smtp.wait_for("admins@example.org", "Labqueue error")
    assert tag in alert.get_content()
    snapshot = Path(stack.config["FAILED_ANALYSES_DIR"]) / str(analysis_id)
    assert tag in json.loads((snapshot / "error.json").read_text())["detail"]
    # The worker's finding reached the web: the next researcher is told up front.
    form = stack.client.get(f"/projects/{stack.project}/run/sleeper").text
    assert "cannot run at the moment" in form


def test_outputs_count_against_the_quota_and_floods_leave_nothing(stack_factory):
    MiB = 1024**2
    stack = stack_factory(STORAGE_QUOTA_BYTES=3 * MiB, MAX_LOG_BYTES=1 * MiB)
    stack.start_worker()
    # More than the quota leaves: stopped, and nothing of it stays.
    big = stack.wait(stack.submit("writer", mode="file", kib="5000"), "failed")
    assert big.error_summary.startswith(
        "The outputs grew past the 3 MiB limit (what your quota had left)"
    ) or big.error_summary.startswith(
        "An output file reached the 3 MiB limit (what your quota had left)"
    ), big.error_summary
    assert list(stack.output(big.id).iterdir()) == []
    # Within it: kept, and counted, so an upload that no longer fits is refused.
    kept = stack.wait(stack.submit("writer", mode="file", kib="2048"), "succeeded")
    assert kept.output_bytes >= 2 * MiB
    refused = upload(stack.client, stack.project, "more.bin", b"x" * (3 * MiB // 2))
    assert refused.status_code == 413, refused.json
    dashboard = " ".join(stack.client.get("/projects/").text.split())
    assert "Using 2.0 MiB of your 3.0 MiB" in dashboard
    # A stdout flood stops at the log cap; the log and its snapshot stay under it.
    flood = stack.wait(stack.submit("writer", mode="stdout", kib="100000"), "failed")
    assert flood.error_summary == "The log grew past the 1 MiB limit."
    log = stack.output(flood.id).parent / "log.txt"
    snapshot = Path(stack.config["FAILED_ANALYSES_DIR"]) / str(flood.id) / "log.txt"
    assert log.stat().st_size < MiB + 200 and snapshot.stat().st_size < MiB + 200
    assert stack.leftover_containers() == []


# --- Chaos: workers killed, the broker away, SMTP away; and scale ------------------


def running_count(stack) -> int:
    with stack.app.app_context():
        return db.session.scalar(
            db.select(db.func.count(Analysis.id)).where(Analysis.state == "running")
        )


def test_workers_killed_0_to_50_ms_after_submit_lose_nothing(stack_factory):
    stack = stack_factory()
    worker = stack.start_worker()
    ids = []
    for trial in range(20):
        analysis_id = stack.submit("sleeper", seconds="1", exit_code="0")
        time.sleep(0.05 * trial / 19)  # 0 to 50 ms after the submit
        worker.kill()
        ids.append(analysis_id)
        worker = stack.start_worker()
    for analysis_id in ids:
        done = stack.wait(analysis_id, "succeeded", "failed", timeout=120)
        assert done.state.value == "succeeded", (analysis_id, done.error_summary)
        # One container start each, whatever the moment of the kill.
        assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"
    with stack.app.app_context():
        stuck = db.session.scalar(
            db.select(db.func.count(Analysis.id)).where(
                Analysis.state.in_(["queued", "running"])
            )
        )
    assert stuck == 0
    assert stack.leftover_containers() == []  # no orphans


def test_a_worker_killed_mid_run_many_times_loses_nothing(stack_factory):
    stack = stack_factory()
    worker = stack.start_worker()
    ids = [stack.submit("sleeper", seconds="4", exit_code="0") for _ in range(4)]
    for _ in range(6):
        time.sleep(1.5)
        worker.kill()
        worker = stack.start_worker()
    for analysis_id in ids:
        done = stack.wait(analysis_id, "succeeded", "failed", timeout=120)
        assert done.state.value == "succeeded", done.error_summary
        assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"
    assert stack.leftover_containers() == []


def rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", action], check=True, capture_output=True)


def test_submitting_while_the_broker_is_away(stack_factory, tmp_path):
    from datetime import UTC, datetime

    period = 5
    stack = stack_factory(
        DISPATCH_SECONDS=period,
        CELERY_EXTRA={"beat_schedule_filename": str(tmp_path / "beat-schedule")},
    )
    stack.start_worker(beat=True)
    rabbitmq("stop_app")
    try:
        url = f"/projects/{stack.project}/run/sleeper"
        token = csrf_token(stack.client.get(url).text)
        reply = stack.client.post(
            url, data={"p_seconds": "0", "p_exit_code": "0", "csrf_token": token}
        )
        assert reply.status_code == 302  # no 500: the row is the queue
        analysis_id = int(reply.headers["Location"].rsplit("/", 1)[1])
        page = stack.client.get(f"/analyses/{analysis_id}").text
        assert "Queued" in page and "position 1 in the queue" in page
        time.sleep(2)
    finally:
        rabbitmq("start_app")
        back = datetime.now(UTC).replace(tzinfo=None)
    done = stack.wait(analysis_id, "succeeded", "failed", timeout=90)
    assert done.state.value == "succeeded"
    assert (done.started_at - back).total_seconds() <= 2 * period


def test_a_start_is_sent_over_a_connection_the_broker_closed(stack_factory, caplog):
    """The web's pooled broker connection, closed by the broker while idle (a
    restart, a forced close, missed heartbeats), is opened again for the next
    submit: its start goes at once, not left for a dispatcher that may not come
    (this worker has no beat)."""
    stack = stack_factory()
    stack.start_worker()
    first = stack.submit("sleeper", seconds="0", exit_code="0")
    assert stack.wait(first, "succeeded", "failed").state.value == "succeeded"
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "closed by a test"],
        check=True,
        capture_output=True,
    )
    second = stack.submit("sleeper", seconds="0", exit_code="0")
    assert "not sent" not in caplog.text
    done = stack.wait(second, "succeeded", "failed", timeout=60)
    assert done.state.value == "succeeded", done.error_summary


def test_mail_waits_for_the_mail_server_and_arrives_once(stack_factory, tmp_path):
    from tests.smtp import SMTPServer

    later = SMTPServer()  # its port is free until it starts: the server is "down"
    stack = stack_factory(
        MAIL_PORT=later.port,
        MAIL_RETRY_SECONDS=1,
        CELERY_EXTRA={"beat_schedule_filename": str(tmp_path / "beat-schedule")},
    )
    stack.start_worker(beat=True)
    analysis_id = stack.submit("sleeper", seconds="0", exit_code="0")
    stack.wait(analysis_id, "succeeded")
    from frontend.core.models import OutgoingMail

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with stack.app.app_context():
            mail = db.session.scalar(db.select(OutgoingMail))
            if mail is not None and mail.attempts >= 1:
                break
        time.sleep(0.5)
    assert mail.sent_at is None and "Connection refused" in mail.last_error
    later.start()
    try:
        later.wait_for("ada@cs.ox.ac.uk", "sleeper on Data finished", timeout=60)
        time.sleep(5)  # more flushes: nothing is sent twice
        assert len(later.sent_to("ada@cs.ox.ac.uk")) == 1
    finally:
        later.stop()
    with stack.app.app_context():
        assert db.session.get(OutgoingMail, mail.id).sent_at is not None


def test_a_container_killed_from_outside_fails_in_plain_words(stack_factory):
    stack = stack_factory()
    stack.start_worker()
    analysis_id = stack.submit("sleeper", seconds="60", exit_code="0")
    stack.wait(analysis_id, "running")
    deadline = time.monotonic() + 30
    while not (mine := stack.containers(analysis_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # the watcher samples usage every second
    mine[0].kill()  # its own container: not one another test left being removed
    done = stack.wait(analysis_id, "failed", "succeeded", timeout=60)
    assert done.error_summary == "It was stopped from outside (killed)."
    assert done.peak_memory_bytes and done.cpu_seconds is not None


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_two_workers_claim_within_the_limits(stack_factory):
    stack = stack_factory(MAX_RUNNING=3, MAX_RUNNING_PER_USER=3)
    stack.start_worker()
    stack.start_worker()
    ids = [stack.submit("sleeper", seconds="2", exit_code="0") for _ in range(12)]
    peak, deadline = 0, time.monotonic() + 180
    while time.monotonic() < deadline:
        peak = max(peak, running_count(stack))
        if all(stack.analysis(i).finished for i in ids):
            break
        time.sleep(0.1)
    assert 1 < peak <= 3
    for analysis_id in ids:
        done = stack.analysis(analysis_id)
        assert done.state.value == "succeeded" and done.attempt == 1
        assert (stack.output(analysis_id) / "runs.txt").read_text() == "run\n"


def test_one_worker_supervises_200_runs_at_once(stack_factory):
    stack = stack_factory(MAX_RUNNING=200, MAX_RUNNING_PER_USER=200)
    stack.start_worker(concurrency=2)
    # Long enough that every run has started before the first ends (200 starts
    # take about a minute on two cores).
    ids = [stack.submit("sleeper", seconds="150", exit_code="0") for _ in range(200)]
    peak, deadline = 0, time.monotonic() + 500
    while time.monotonic() < deadline:
        with stack.app.app_context():
            launched, finished = db.session.execute(
                db.select(
                    db.func.count(Analysis.id).filter(
                        Analysis.state == "running", Analysis.handle.is_not(None)
                    ),
                    db.func.count(Analysis.id).filter(
                        Analysis.state.in_(FINISHED_STATES)
                    ),
                ).where(Analysis.id.in_(ids))
            ).one()
        peak = max(peak, launched)
        if finished == len(ids):
            break
        time.sleep(1)
    assert peak == 200
    states = [stack.analysis(i).state.value for i in ids]
    assert states.count("succeeded") == 200, sorted(set(states))
    assert stack.leftover_containers() == []
