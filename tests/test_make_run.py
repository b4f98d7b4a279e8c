"""`make run` from a fresh clone: the newcomer's first minutes, on a machine like
ours (a Docker engine with no images, no container registry within reach).

Clones the committed HEAD (uncommitted changes are not part of the clone), starts
a second, empty Docker engine whose registry traffic goes nowhere, lets `make run`
build its own .venv and pipeline images, runs each reference pipeline through the
web app, then stops it as Ctrl-C would and starts it again.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.services import unavailable
from tests.smtp import _free_port

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
# pip install, debootstrap (about two minutes) and the image builds.
FIRST_START_LIMIT = 900
AGAIN_LIMIT = 90  # images exist: nothing is rebuilt


def clean_env() -> dict[str, str]:
    """The environment of a fresh shell: no settings or make state of ours."""
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "DOCKER_HOST")
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LABQUEUE_") and k not in drop
    }


@pytest.fixture
def empty_engine():
    """A second Docker engine with its own data, an empty image store, and every
    registry out of reach (its proxy is a closed port)."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        unavailable("a second Docker engine needs dockerd (docker.io) and root")
    # Short: the engine's sockets live under these folders.
    folder = Path(tempfile.mkdtemp(prefix="lqd-", dir="/tmp"))
    host = f"unix://{folder}/docker.sock"
    closed = "http://127.0.0.1:9"
    with open(folder / "dockerd.log", "w") as log:
        process = subprocess.Popen(
            [dockerd, "--data-root", str(folder / "data")]
            + ["--exec-root", str(folder / "exec"), "--pidfile", str(folder / "pid")]
            + ["--host", host, "--iptables=false", "--ip-masq=false"]
            + ["--bridge=none"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed},
            start_new_session=True,
        )
    try:
        for _ in range(120):
            if (folder / "docker.sock").exists():
                answer = subprocess.run(
                    ["docker", "--host", host, "info", "--format", "{{.Images}}"],
                    capture_output=True,
                    text=True,
                )
                if answer.returncode == 0:
                    assert answer.stdout.strip() == "0"
                    break
            time.sleep(0.5)
        else:
            log = (folder / "dockerd.log").read_text()
            pytest.fail(f"second engine did not start:\n{log}")
        yield host
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


class MakeRun:
    """`make run` in its own session, stopped as Ctrl-C stops it (SIGINT to the
    terminal's process group)."""

    def __init__(self, clone: Path, port: int, env: dict, output: Path):
        self.clone, self.port, self.output = clone, port, output
        self.worker_log = clone / "logs" / "worker.log"
        self.ready_before = self._ready_count()
        with output.open("w") as log:
            self.process = subprocess.Popen(
                ["make", "run", f"PORT={port}"],
                cwd=clone,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"

    def text(self) -> str:
        return self.output.read_text()

    def home_page(self) -> str | None:
        try:
            return requests.get(self.url + "/", timeout=2).text
        except requests.RequestException:
            return None

    def _ready_count(self) -> int:
        if not self.worker_log.exists():
            return 0
        return self.worker_log.read_text().count("ready, consuming")

    def wait_up(self, limit: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.home_page() and self._ready_count() > self.ready_before:
                return time.monotonic() - started
            assert self.process.poll() is None, self.text()
            time.sleep(1)
        pytest.fail(f"not up within {limit}s:\n{self.text()}")

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


class Browser:
    """A researcher's session through the real pages, with requests."""

    def __init__(self, url: str):
        self.url, self.session = url, requests.Session()

    def token(self, path: str) -> str:
        page = self.session.get(self.url + path, timeout=30).text
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)

    def post_form(self, path: str, data: dict) -> requests.Response:
        data = {**data, "csrf_token": self.token(path)}
        return self.session.post(
            self.url + path, data=data, allow_redirects=False, timeout=30
        )

    def upload(self, project: int, name: str) -> None:
        page = self.session.get(f"{self.url}/projects/{project}", timeout=30).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        reply = self.session.post(
            f"{self.url}/projects/{project}/upload",
            params={"path": name},
            data=(DATA / name).read_bytes(),
            headers={"X-CSRFToken": token, "Accept": "application/json"},
            timeout=60,
        )
        assert reply.json()["ok"], reply.text

    def run(self, project: int, pipeline: str, fields: dict) -> int:
        reply = self.post_form(f"/projects/{project}/run/{pipeline}", fields)
        assert reply.status_code == 302, reply.text
        return int(reply.headers["Location"].rsplit("/", 1)[1])

    def wait_finished(self, analysis: int, limit: float = 300) -> dict:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            status = self.session.get(
                f"{self.url}/analyses/{analysis}/status", timeout=30
            ).json()
            if status["finished"]:
                return status
            time.sleep(1)
        pytest.fail(f"analysis {analysis} did not finish in {limit}s")


def assert_clean_stop(code: int, output: str, since: int) -> None:
    """What Ctrl-C printed: no errors, no make complaint, status 0 from make's child."""
    tail = output[since:]
    assert "Stopping" in tail
    for bad in ("ERROR", "Error 130", "Traceback", "make: ***"):
        assert bad not in tail, f"{bad!r} after Ctrl-C:\n{tail}"
    # make re-raises SIGINT on itself once its recipe ended well.
    assert code in (0, -signal.SIGINT), code


@pytest.mark.makerun
@pytest.mark.docker
def test_make_run_on_an_empty_engine_without_a_registry(tmp_path, empty_engine):
    clone = tmp_path / "labqueue"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    port = _free_port()
    env = {**clean_env(), "DOCKER_HOST": empty_engine}

    run = MakeRun(clone, port, env, tmp_path / "first.log")
    try:
        run.wait_up(FIRST_START_LIMIT)
        output = run.text()
        assert "Register with your institution" in run.home_page()
        assert "python:3.12-slim cannot be pulled" in output
        assert "Making the local Debian base labqueue/python-base:bookworm" in output
        password = re.search(r"Generated password \(shown once\): (\S+)", output)

        researcher = Browser(run.url)
        login = {"email": "admin@example.org", "password": password.group(1)}
        assert researcher.post_form("/login", login).status_code == 302
        created = researcher.post_form("/projects/new", {"name": "First data"})
        project = int(created.headers["Location"].rsplit("/", 1)[1])
        researcher.upload(project, "expression.csv")
        researcher.upload(project, "reads.fastq.gz")
        runs = {
            "table-profiler": researcher.run(
                project,
                "table-profiler",
                {"p_tables": "expression.csv", "p_bins": "30", "p_max_rows": "0"},
            ),
            "seq-qc": researcher.run(
                project, "seq-qc", {"p_sequences": "reads.fastq.gz"}
            ),
        }
        for name, analysis in runs.items():
            status = researcher.wait_finished(analysis)
            assert status["state"] == "succeeded", (name, status, run.text())
        page = researcher.session.get(f"{run.url}/analyses/{runs['seq-qc']}").text
        assert "qc_summary.csv" in page
    finally:
        code = run.ctrl_c()
    output = run.text()
    assert_clean_stop(code, output, output.index("ready, consuming"))
    assert "superuser privileges" not in output  # Celery's screenful
    if os.geteuid() == 0:
        assert output.count("This worker runs as root because") == 1
    assert run.home_page() is None
    leftovers = subprocess.run(
        ["pgrep", "-f", str(clone)], capture_output=True, text=True
    ).stdout
    assert leftovers == "", f"processes still running: {leftovers}"

    # A second start finds the images and rebuilds nothing.
    again = MakeRun(clone, port, env, tmp_path / "again.log")
    try:
        seconds = again.wait_up(AGAIN_LIMIT)
        assert "Pipeline images are up to date (2)." in again.text()
        assert "Building" not in again.text()
    finally:
        code = again.ctrl_c()
    assert_clean_stop(code, again.text(), again.text().index("ready, consuming"))
    print(f"second start: up in {seconds:.1f} s")
