"""A run is hostile: what it writes never makes the server read or send a host
file. A real container (a pipeline run, and a GA4GH TES task) plants links to a
host file and to another user's file, a link in place of a folder, a FIFO and a
socket, and swaps a file and a folder between real ones and links in a loop,
while the test downloads through the web, the API and a share link, over HTTP.
Expected everywhere: never a byte of a target, no hang, no 500."""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path

import pytest
import requests

from backend.images import LOCAL_BASE_IMAGE, build_pipeline_image
from backend.manifest import load_pipeline
from frontend.core.extensions import db
from frontend.core.models import Analysis, ProjectFile
from tests.conftest import PASSWORD, LiveServer
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]
HOSTILE = Path(__file__).parent / "hostile"
HOST_SECRET = b"HOST-SECRET-7f3a"
OTHER_SECRET = b"OTHER-USERS-SECRET-91c2"
DIR_SECRET = b"HOST-FOLDER-SECRET-5d0e"
SECRETS = (HOST_SECRET, OTHER_SECRET, DIR_SECRET)
# Regular outputs, and what they hold; anything else planted must never be listed.
REGULAR = {
    "regular.txt": b"a regular output\n",
    "new\nline.txt": b"a name with a newline\n",
    "swap.txt": b"REGULAR\n",
    "swapdir/inner.txt": b"inside a real folder\n",
}
PLANTED = ["host.txt", "other.txt", "dir/secret.txt", "fifo.txt", "socket.txt"]
SWAPPED = ["swap.txt", "swapdir/inner.txt", "swapdir/secret.txt"]
ROUNDS = 200


@pytest.fixture(scope="module")
def planter(images):
    """The planter test pipeline's image, on the local Python base."""
    build_pipeline_image(images, load_pipeline(HOSTILE / "planter"), LOCAL_BASE_IMAGE)
    return images


class Hostile:
    """A live server and a worker; ada signed in over HTTP, with a token; host
    files with secrets, and another user's file."""

    def __init__(self, stack, live: LiveServer, tmp_path: Path):
        self.stack, self.url = stack, live.url
        cli = stack.app.test_cli_runner()
        made = cli.invoke(
            args=["tokens", "create", "--email", "ada@cs.ox.ac.uk", "--name", "t"]
        )
        assert made.exit_code == 0, made.output
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Bearer {made.output.strip()}"
        self.web = requests.Session()
        page = self.web.get(f"{self.url}/login", timeout=30).text
        self.web.post(
            f"{self.url}/login",
            data={
                "email": "ada@cs.ox.ac.uk",
                "password": PASSWORD,
                "csrf_token": _csrf(page),
            },
            timeout=30,
        ).raise_for_status()
        # A host file (sparse and large: the quota must not count it either),
        # a host folder, and a file of another user's project.
        self.host_file = tmp_path / "host-secret.txt"
        with open(self.host_file, "wb") as handle:
            handle.write(HOST_SECRET)
            handle.truncate(64 * 1024**2)
        self.host_dir = tmp_path / "host-folder"
        self.host_dir.mkdir()
        (self.host_dir / "secret.txt").write_bytes(DIR_SECRET)
        (self.host_dir / "inner.txt").write_bytes(DIR_SECRET)
        bobs = Path(stack.config["USER_DATA_DIR"]) / "99" / "1" / "files"
        bobs.mkdir(parents=True)
        self.other_file = bobs / "secret.txt"
        self.other_file.write_bytes(OTHER_SECRET)

    def params(self, seconds: int) -> dict:
        return {
            "host_file": str(self.host_file),
            "other_file": str(self.other_file),
            "host_dir": str(self.host_dir),
            "seconds": seconds,
        }

    def get(self, session: requests.Session, path: str) -> requests.Response:
        """A GET that must answer (no hang) and never with a server error."""
        started = time.monotonic()
        reply = session.get(self.url + path, timeout=20)
        assert time.monotonic() - started < 20
        assert reply.status_code in (200, 404), (path, reply.status_code, reply.text)
        for secret in SECRETS:
            assert secret not in reply.content, (path, secret)
        return reply

    def share_link(self, analysis: int) -> str:
        page = self.web.get(f"{self.url}/analyses/{analysis}", timeout=30).text
        made = self.web.post(
            f"{self.url}/analyses/{analysis}/links",
            data={"days": "7", "csrf_token": _csrf(page)},
            timeout=30,
        )
        return "/s/" + re.search(r"/s/(lqs_[A-Za-z0-9_-]+)", made.text)[1]

    def wait_for(self, path: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert path.exists(), f"{path} did not appear"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)[1]


def _check_zip(reply: requests.Response) -> None:
    if reply.status_code != 200:
        return
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        assert archive.testzip() is None
        for name in archive.namelist():
            assert name.split("/", 1)[-1] not in PLANTED, name
            data = archive.read(name)
            for secret in SECRETS:
                assert secret not in data, name


@pytest.fixture
def hostile(stack_factory, planter, tmp_path):  # noqa: F811
    stack = stack_factory(PIPELINES_DIR=str(HOSTILE), SITE_URL="http://127.0.0.1")
    with LiveServer(stack.app) as live:
        stack.start_worker()
        yield Hostile(stack, live, tmp_path)


def _hammer(lab: Hostile, bases: dict[str, requests.Session], names: list[str]):
    """Every name through every address, ROUNDS times for what swaps."""
    for round_number in range(ROUNDS):
        for base, session in bases.items():
            for name in SWAPPED if round_number else SWAPPED + names:
                reply = lab.get(session, f"{base}/outputs/{name}")
                if reply.status_code == 200 and name in REGULAR:
                    assert reply.content == REGULAR[name], name
            if round_number % 40 == 0:
                _check_zip(lab.get(session, f"{base}/outputs.zip"))


def test_a_hostile_pipeline_run_never_makes_the_server_send_a_host_file(hostile):
    lab, stack = hostile, hostile.stack
    # It swaps until told to stop (or 2 min): the probes below are all made
    # while it swaps, however slow the machine.
    run = stack.submit("planter", **lab.params(seconds=120))
    lab.wait_for(stack.output(run) / "swap.txt")
    link = lab.share_link(run)
    bases = {
        f"/analyses/{run}": lab.web,
        f"/api/v1/analyses/{run}": lab.api,
        link: requests.Session(),
    }
    _hammer(lab, bases, PLANTED + ["new%0Aline.txt"])
    assert stack.analysis(run).state.value == "running", "the swaps ended too soon"
    project_files = Path(stack.config["USER_DATA_DIR"]) / str(stack.user_id)
    (project_files / str(stack.project) / "files" / "stop-swapping").touch()

    ended = stack.wait(run, "succeeded", "failed")
    assert ended.state.value == "succeeded", ended.error_summary
    # Only regular files are outputs, each with its own bytes; the run's size is
    # its own files' (not the 64 MiB file a link pointed to).
    listed = lab.get(lab.api, f"/api/v1/analyses/{run}/outputs").json()
    assert {item["path"] for item in listed} == set(REGULAR)
    assert ended.output_bytes < 1024**2
    for base, session in bases.items():
        for name, data in REGULAR.items():
            path = name.replace("\n", "%0A")
            assert lab.get(session, f"{base}/outputs/{path}").content == data
        _check_zip(lab.get(session, f"{base}/outputs.zip"))
    # The analysis' page, to its owner and through the link: the outputs listed
    # (and previewed: the manifest features *.txt), nothing planted.
    for page in (lab.get(lab.web, f"/analyses/{run}"), lab.get(bases[link], link)):
        assert "regular.txt" in page.text and "a regular output" in page.text
        assert "host.txt" not in page.text and "fifo.txt" not in page.text
    # Added to a project: the regular files, with their bytes, nothing else.
    page = lab.web.get(f"{lab.url}/analyses/{run}", timeout=30).text
    added = lab.web.post(
        f"{lab.url}/analyses/{run}/add-to-project",
        data={
            "csrf_token": _csrf(page),
            "project": stack.project,
            "folder": "planted",
            "on_clash": "keep",
            "everything": "1",
        },
        timeout=30,
    )
    assert "3 output(s) of" in added.text, added.text
    # A name no project file may have is left out, and said so.
    assert "left out: " in added.text and "control characters" in added.text
    with stack.app.app_context():
        rows = db.session.scalars(
            db.select(ProjectFile).where(~ProjectFile.is_dir)
        ).all()
        stored = {row.path.removeprefix("planted/"): row for row in rows}
        files = Path(stack.config["USER_DATA_DIR"]) / str(stack.user_id)
        assert set(stored) == set(REGULAR) - {"new\nline.txt"}
        for name, row in stored.items():
            assert (files / str(stack.project) / "files" / row.path).read_bytes() == (
                REGULAR[name]
            )


def test_a_hostile_tes_task_never_makes_the_server_send_a_host_file(hostile):
    lab, stack = hostile, hostile.stack
    host, other, folder = lab.host_file, lab.other_file, lab.host_dir
    owner = (folder.stat().st_uid, folder.stat().st_gid)
    plant = (
        f"python3 /app/plant.py /data/output {host} {other} {folder} 30; "
        # Its own executor files: stdout a link to a host file, the start mark
        # a FIFO; and a link in place of the folder volumes are made in.
        f"rm -f /labqueue-tes/1.out /labqueue-tes/1.start; "
        f"ln -s {host} /labqueue-tes/1.out; mkfifo /labqueue-tes/1.start; "
        f"ln -s {folder} /labqueue-tes/volumes"
    )
    then = (
        "rm -f /labqueue-tes/1.err /labqueue-tes/2.out; "
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX)"
        '.bind("/labqueue-tes/1.err")\'; '
        f"ln -s {other} /labqueue-tes/2.out"
    )
    image = load_pipeline(HOSTILE / "planter").image_tag
    created = lab.api.post(
        f"{lab.url}/ga4gh/tes/v1/tasks",
        json={
            "executors": [
                {"image": image, "command": ["sh", "-c", plant]},
                {"image": image, "command": ["sh", "-c", then]},
            ]
        },
        timeout=30,
    )
    assert created.status_code == 200, created.text
    task = created.json()["id"]
    with stack.app.app_context():
        project = db.session.get(Analysis, int(task)).project_id
    swap = Path(
        stack.config["USER_DATA_DIR"],
        str(stack.user_id),
        str(project),
        "analyses",
        task,
        "output",
        "swap.txt",
    )
    lab.wait_for(swap)
    full = f"/ga4gh/tes/v1/tasks/{task}?view=FULL"
    for round_number in range(ROUNDS):
        for name in SWAPPED if round_number else SWAPPED + PLANTED:
            reply = lab.get(lab.api, f"/api/v1/analyses/{task}/outputs/{name}")
            if reply.status_code == 200 and name in REGULAR:
                assert reply.content == REGULAR[name]
        if round_number % 20 == 0:
            assert lab.get(lab.api, full).status_code == 200
    deadline = time.monotonic() + 120
    while (shown := lab.get(lab.api, full).json())["state"] not in (
        "COMPLETE",
        "EXECUTOR_ERROR",
        "SYSTEM_ERROR",
    ):
        assert time.monotonic() < deadline, shown["state"]
        time.sleep(0.5)
    assert shown["state"] == "COMPLETE", shown["logs"][0].get("system_logs")
    first, second = shown["logs"][0]["logs"]
    assert first["stdout"] == "" and first["start_time"] is None
    assert first["stderr"] == "" and second["stdout"] == ""
    outputs = {item["path"] for item in shown["logs"][0]["outputs"]}
    assert outputs == {f"/data/output/{name}" for name in REGULAR}
    # Nothing was made in, or handed over through, the planted links.
    assert sorted(p.name for p in folder.iterdir()) == ["inner.txt", "secret.txt"]
    assert (folder.stat().st_uid, folder.stat().st_gid) == owner
