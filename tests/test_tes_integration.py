"""GA4GH TES end to end: py-tes, the reference client, against a live server with
RabbitMQ, a real worker and Docker containers; then the GA4GH compliance suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tes

from frontend.core.extensions import db
from frontend.core.models import Analysis, ProjectFile
from tests.conftest import LiveServer
from tests.images import BUSYBOX_IMAGE
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]
ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "vendor" / "openapi-test-runner"
FINAL = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED")


class Lab:
    """A stack with a live server, a worker, ada's token and the busybox image
    allowed for tasks."""

    def __init__(self, stack, live: LiveServer):
        self.stack, self.live = stack, live
        cli = stack.app.test_cli_runner()
        made = cli.invoke(
            args=["tokens", "create", "--email", "ada@cs.ox.ac.uk", "--name", "tes"]
        )
        assert made.exit_code == 0, made.output
        self.token = made.output.strip()
        allowed = cli.invoke(args=["tes", "allow-image", BUSYBOX_IMAGE])
        assert allowed.exit_code == 0, allowed.output
        # py-tes adds /ga4gh/tes/v1 itself.
        self.client = tes.HTTPClient(live.url, token=self.token, timeout=30)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def put_file(self, path: str, data: bytes) -> None:
        reply = requests.put(
            f"{self.live.url}/api/v1/projects/{self.stack.project}/files",
            params={"path": path},
            data=data,
            headers=self.headers,
            timeout=30,
        )
        assert reply.status_code == 201, reply.text

    def file(self, path: str) -> dict:
        """A project file as the API lists it, with its provenance from the row."""
        listing = requests.get(
            f"{self.live.url}/api/v1/projects/{self.stack.project}/files",
            headers=self.headers,
            timeout=30,
        ).json()
        found = next((e for e in listing if e["path"] == path), None)
        assert found is not None, [e["path"] for e in listing]
        with self.stack.app.app_context():
            entry = db.session.get(ProjectFile, found["id"])
            return {**found, "provenance": entry.provenance}

    def read(self, path: str) -> bytes:
        entry = self.file(path)
        reply = requests.get(
            f"{self.live.url}/api/v1/projects/{self.stack.project}/files/"
            f"{entry['id']}/content",
            headers=self.headers,
            timeout=30,
        )
        assert reply.status_code == 200
        return reply.content

    def wait(self, task_id: str, *states: str, timeout: float = 120) -> tes.Task:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.client.get_task(task_id, view="MINIMAL")
            if task.state in states:
                return self.client.get_task(task_id, view="FULL")
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} is {task.state}, not {states}")


@pytest.fixture
def lab(stack_factory):  # noqa: F811
    stack = stack_factory(SITE_URL="http://127.0.0.1")
    with LiveServer(stack.app) as live:
        stack.start_worker()
        yield Lab(stack, live)


def executor(*command: str, **fields) -> tes.Executor:
    return tes.Executor(image=BUSYBOX_IMAGE, command=list(command), **fields)


def test_py_tes_runs_a_task_with_project_and_inline_inputs(lab):
    lab.put_file("reads/sample.txt", b"ACGT\n" * 1000)
    task = tes.Task(
        name="count",
        tags={"study": "s1"},
        inputs=[
            tes.Input(
                url=f"labqueue://projects/{lab.stack.project}/reads/sample.txt",
                path="/inputs/sample.txt",
            ),
            tes.Input(path="/inputs/greeting.txt", content="hello from TES\n"),
        ],
        outputs=[
            tes.Output(
                url=f"labqueue://projects/{lab.stack.project}/results/count.txt",
                path="/data/output/count.txt",
            ),
            # As a workflow engine sharing a folder with its tasks declares it.
            tes.Output(
                url="file:///data/output/count.txt", path="/data/output/count.txt"
            ),
        ],
        executors=[
            executor("sh", "-c", "wc -c < /inputs/sample.txt > /data/output/count.txt"),
            executor(
                "sh",
                "-c",
                'cat /inputs/greeting.txt; echo "in $PWD as $WHO"; echo oops >&2',
                workdir="/tmp",
                env={"WHO": "ada"},
            ),
        ],
        resources=tes.Resources(cpu_cores=64, ram_gb=0.25),
    )
    task_id = lab.client.create_task(task)
    done = lab.wait(task_id, *FINAL)
    assert done.state == "COMPLETE", done.logs
    log = done.logs[0]
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert log.logs[1].stdout == "hello from TES\nin /tmp as ada\n"
    assert log.logs[1].stderr == "oops\n"
    assert log.logs[0].start_time and log.logs[1].end_time
    # The cap on what it asked is said, not applied silently.
    assert any("64 CPU cores" in line for line in log.system_logs)
    (output,) = log.outputs
    assert output.path == "/data/output/count.txt" and output.size_bytes == 5
    got = requests.get(output.url, headers=lab.headers, timeout=30)
    assert got.status_code == 200 and got.text.strip() == "5000"
    # The labqueue:// output is now a file of the project, with where it came from.
    added = lab.file("results/count.txt")
    assert added["size"] == 5
    assert added["provenance"]["analysis"] == int(task_id)
    assert added["provenance"]["output"] == "count.txt"
    # The inline input reads back in FULL, not in BASIC.
    assert done.inputs[1].content == "hello from TES\n"
    basic = lab.client.get_task(task_id, view="BASIC")
    assert basic.inputs[1].content is None and basic.logs[0].logs[1].stdout is None
    listed = lab.client.list_tasks(view="BASIC")
    assert [t.id for t in listed.tasks] == [task_id] and listed.tasks[0].tags == {
        "study": "s1"
    }
    # It is an analysis like any other: on the run's page, with its log.
    page = lab.stack.client.get(f"/analyses/{task_id}")
    assert page.status_code == 200 and "hello from TES" in page.text
    assert f"#{task_id} TES task count" in page.text and "Run again" not in page.text
    assert lab.stack.leftover_containers() == []


def test_three_tasks_chained_through_project_folders_as_an_engine_would(lab):
    """What a workflow engine does with TES: each step's outputs, folders
    included, sent to the project, and read by the next step as inputs."""
    project = f"labqueue://projects/{lab.stack.project}"
    lab.put_file("wf/reads.txt", b"".join(b"read%d\n" % n for n in range(10)))

    def step(name, inputs, outputs, script) -> tes.Task:
        task_id = lab.client.create_task(
            tes.Task(
                name=name,
                inputs=inputs,
                outputs=outputs,
                executors=[executor("sh", "-euc", script)],
            )
        )
        done = lab.wait(task_id, *FINAL)
        assert done.state == "COMPLETE", (name, done.logs)
        return done

    # 1: split the reads in chunks of 4, into a folder (a DIRECTORY output).
    step(
        "split",
        [tes.Input(url=f"{project}/wf/reads.txt", path="/in/reads.txt")],
        [
            tes.Output(
                url=f"{project}/wf/chunks",
                path="/data/output/chunks",
                type="DIRECTORY",
            )
        ],
        "mkdir /data/output/chunks && cd /data/output/chunks && "
        "awk '{print > sprintf(\"part-%d\", int((NR - 1) / 4))}' /in/reads.txt",
    )
    assert lab.read("wf/chunks/part-0") == b"read0\nread1\nread2\nread3\n"
    assert lab.read("wf/chunks/part-2") == b"read8\nread9\n"
    # 2: the folder as a DIRECTORY input; one count per chunk.
    step(
        "count",
        [tes.Input(url=f"{project}/wf/chunks", path="/in/chunks", type="DIRECTORY")],
        [tes.Output(url=f"{project}/wf/counts.txt", path="/data/output/counts.txt")],
        "for f in /in/chunks/*; do wc -l < $f; done > /data/output/counts.txt",
    )
    assert lab.read("wf/counts.txt").split() == [b"4", b"4", b"2"]
    # 3: the sum, from the second step's file.
    done = step(
        "sum",
        [tes.Input(url=f"{project}/wf/counts.txt", path="/in/counts.txt")],
        [tes.Output(url=f"{project}/wf/total.txt", path="/data/output/total.txt")],
        "awk '{s+=$1} END {print s}' /in/counts.txt > /data/output/total.txt",
    )
    assert lab.read("wf/total.txt") == b"10\n"
    assert lab.file("wf/total.txt")["provenance"]["analysis"] == int(done.id)
    # Run again, a step replaces what it made before (as an engine expects).
    step(
        "sum again",
        [tes.Input(url=f"{project}/wf/counts.txt", path="/in/counts.txt")],
        [tes.Output(url=f"{project}/wf/total.txt", path="/data/output/total.txt")],
        "echo 11 > /data/output/total.txt",
    )
    assert lab.read("wf/total.txt") == b"11\n"


def test_an_output_that_cannot_be_added_ends_in_system_error(lab):
    lab.put_file("reads/a.txt", b"x")
    task_id = lab.client.create_task(
        tes.Task(
            outputs=[
                tes.Output(  # a folder of the project is there: not replaced
                    url=f"labqueue://projects/{lab.stack.project}/reads",
                    path="/data/output/n.txt",
                ),
                tes.Output(  # what the task never wrote
                    url=f"labqueue://projects/{lab.stack.project}/m.txt",
                    path="/data/output/m.txt",
                ),
            ],
            executors=[executor("sh", "-c", "echo 1 > /data/output/n.txt")],
        )
    )
    done = lab.wait(task_id, *FINAL)
    assert done.state == "SYSTEM_ERROR"
    assert done.logs[0].logs[0].exit_code == 0
    said = " ".join(done.logs[0].system_logs)
    assert "Output 1 (labqueue://projects/" in said and "/reads) could not be" in said
    assert "is a folder; it cannot be replaced" in said
    assert lab.read("reads/a.txt") == b"x"  # what was there is untouched
    # The task's own outputs stay with it, to download.
    assert [o.path for o in done.logs[0].outputs] == ["/data/output/n.txt"]


def test_executor_failures_stop_the_task_unless_ignored(lab):
    stopped = lab.client.create_task(
        tes.Task(executors=[executor("sh", "-c", "exit 3"), executor("echo", "later")])
    )
    ignored = lab.client.create_task(
        tes.Task(
            executors=[
                executor("no-such-command", ignore_error=True),
                executor("echo", "later"),
            ]
        )
    )
    first = lab.wait(stopped, *FINAL)
    assert first.state == "EXECUTOR_ERROR"
    assert [e.exit_code for e in first.logs[0].logs] == [3]
    second = lab.wait(ignored, *FINAL)
    assert second.state == "COMPLETE"
    assert [e.exit_code for e in second.logs[0].logs] == [127, 0]
    assert second.logs[0].logs[1].stdout == "later\n"


def test_a_url_this_server_does_not_fetch_ends_in_system_error(lab):
    task_id = lab.client.create_task(
        tes.Task(
            inputs=[tes.Input(url="s3://bucket/reads.fq", path="/data/reads.fq")],
            executors=[executor("cat", "/data/reads.fq")],
        )
    )
    done = lab.wait(task_id, *FINAL)
    assert done.state == "SYSTEM_ERROR"
    assert any(
        "s3://bucket/reads.fq" in line and "fetches nothing" in line
        for line in done.logs[0].system_logs
    )
    assert done.logs[0].logs == []


def test_a_running_task_is_cancelled_and_its_container_goes(lab):
    task_id = lab.client.create_task(tes.Task(executors=[executor("sleep", "60")]))
    lab.wait(task_id, "RUNNING")
    lab.client.cancel_task(task_id)
    assert lab.wait(task_id, "CANCELED", timeout=60).state == "CANCELED"
    with lab.stack.app.app_context():
        assert db.session.get(Analysis, int(task_id)).state.value == "cancelled"
    assert lab.stack.leftover_containers() == []


def _suite_python(root: Path) -> Path:
    """The compliance suite's own virtualenv, from its pinned requirements."""
    venv = root / ".venv-tes-compliance"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(SUITE / "requirements.txt"),
            ],
            check=True,
        )
        marker.touch()
    return python


def test_the_ga4gh_compliance_suite_passes(lab, tmp_path, request):
    """The suite's tests name the image "alpine": tagged here from busybox."""
    lab.stack.docker.images.get(BUSYBOX_IMAGE).tag("alpine", "latest")
    request.addfinalizer(lambda: lab.stack.docker.images.remove("alpine:latest"))
    allowed = lab.stack.app.test_cli_runner().invoke(
        args=["tes", "allow-image", "alpine"]
    )
    assert allowed.exit_code == 0
    python = _suite_python(ROOT)
    workdir = tmp_path / "suite"
    shutil.copytree(SUITE, workdir)
    server = lab.live.url.replace("http://", f"http://tes:{lab.token}@") + "/ga4gh/tes/"
    run = subprocess.run(
        [
            str(python),
            "-m",
            "compliance_suite.cli",
            "report",
            "--server",
            server,
            "--version",
            "1.1.0",
            "--output_path",
            str(tmp_path),
        ],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(workdir)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    failed = [
        f"{phase['phase_name']}: {test['test_name']} {case['case_name']}"
        for phase in report["phases"]
        for test in phase["tests"]
        for case in test["cases"]
        if case["status"] != "PASS"
    ]
    assert failed == KNOWN_FAILURES, (failed, run.stdout[-5000:], run.stderr[-5000:])
    # Every other phase ran and passed: none was skipped.
    assert report["summary"]["skipped"] == 0 and report["summary"]["passed"] > 100


# The suite asks for a task's executor logs right after creating it, before any
# server could have run it (as Funnel's report shows too); see the README.
KNOWN_FAILURES = ["tests/create_task_ignore_error.yml: get_task Filter-1"]
