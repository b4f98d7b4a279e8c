"""The REST API end to end: a script's calls through RabbitMQ, a real worker and
Docker containers, as a lab's scripts make them."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


class Script:
    """A script holding a token: no browser, no cookie."""

    def __init__(self, stack):
        made = stack.app.test_cli_runner().invoke(
            args=["tokens", "create", "--email", "ada@cs.ox.ac.uk", "--name", "script"]
        )
        assert made.exit_code == 0, made.output
        self.client = stack.app.test_client(use_cookies=False)
        self.headers = {"Authorization": f"Bearer {made.output.strip()}"}

    def __getattr__(self, method: str):
        call = getattr(self.client, method)
        return lambda url, **kwargs: call(url, headers=self.headers, **kwargs)

    def wait(self, analysis_id: int, *states: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.get(f"/api/v1/analyses/{analysis_id}").json
            if found["state"] in states:
                return found
            time.sleep(0.3)
        raise AssertionError(f"#{analysis_id} is {found['state']}, not {states}")


def test_a_script_uploads_runs_follows_and_downloads(stack_factory):  # noqa: F811
    stack = stack_factory()
    script = Script(stack)
    project = script.post("/api/v1/projects", json={"name": "Scripted"}).json["id"]
    stored = script.put(
        f"/api/v1/projects/{project}/files?path=in/notes.txt", data=b"hello\n"
    )
    assert stored.status_code == 201
    made = script.post(
        "/api/v1/analyses",
        json={
            "project_id": project,
            "pipeline": "writer",
            "parameters": {"mode": "file", "kib": 3},
        },
    )
    assert made.status_code == 201
    analysis = made.json["id"]
    stack.start_worker()
    done = script.wait(analysis, "succeeded", "failed", "cancelled")
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0 and done["started_at"] and done["finished_at"]
    # The log, read in pieces from the offsets the API gives, is the whole log.
    text, offset = "", 0
    while True:
        piece = script.get(f"/api/v1/analyses/{analysis}/log?offset={offset}").json
        if not piece["text"]:
            break
        text, offset = text + piece["text"], piece["offset"]
    assert "3+0 records out" in text
    assert script.get(f"/api/v1/analyses/{analysis}/outputs").json == [
        {"path": "out.bin", "size": 3072}
    ]
    with script.get(f"/api/v1/analyses/{analysis}/outputs/out.bin") as got:
        assert got.data == b"\0" * 3072
    with script.get(f"/api/v1/analyses/{analysis}/outputs.zip") as zipped:
        bundle = zipfile.ZipFile(io.BytesIO(zipped.data))
    assert bundle.read("out.bin") == b"\0" * 3072
    listed = script.get(f"/api/v1/analyses?project_id={project}&state=succeeded")
    assert [a["id"] for a in listed.json["items"]] == [analysis]


def test_a_script_cancels_a_running_analysis(stack_factory):  # noqa: F811
    stack = stack_factory()
    script = Script(stack)
    stack.start_worker()
    made = script.post(
        "/api/v1/analyses",
        json={
            "project_id": stack.project,
            "pipeline": "sleeper",
            "parameters": {"seconds": 300},
        },
    )
    analysis = made.json["id"]
    running = script.wait(analysis, "running")
    assert running["progress_percent"] >= 0
    stopping = script.post(f"/api/v1/analyses/{analysis}/cancel").json
    assert stopping == {"message": "The analysis is being stopped.", "state": "running"}
    assert script.wait(analysis, "cancelled", timeout=60)["state"] == "cancelled"
    assert stack.leftover_containers() == []
