"""The `labqueue` command against a live server over real HTTP: login, projects,
a resumable upload interrupted by killing the client, resumed to an equal file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frontend.core.extensions import db
from frontend.core.models import ResumableUpload
from tests.conftest import LiveServer
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(app, make_user, runner):
    make_user(email="ada@cs.ox.ac.uk")
    made = runner.invoke(
        args=["tokens", "create", "--email", "ada@cs.ox.ac.uk", "--name", "cli"]
    )
    with LiveServer(app) as live:
        yield live, made.output.strip()


def labqueue(home: Path, *args: str, **kwargs):
    env = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "frontend.client", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def finish(process) -> tuple[int, str]:
    out, _ = process.communicate(timeout=300)
    return process.returncode, out


def test_login_keeps_the_token_private_and_projects_are_listed(server, tmp_path):
    live, token = server
    code, out = finish(labqueue(tmp_path, "login", "--url", live.url, "--token", token))
    assert code == 0 and "Logged in" in out, out
    saved = tmp_path / "labqueue" / "config.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert json.loads(saved.read_text()) == {"url": live.url, "token": token}
    code, out = finish(labqueue(tmp_path, "login", "--url", live.url, "--token", "x"))
    assert code != 0 and "not valid" in out


def test_an_interrupted_upload_resumes_to_an_equal_file(app, server, tmp_path):
    live, token = server
    finish(labqueue(tmp_path, "login", "--url", live.url, "--token", token))
    import requests

    requests.post(
        f"{live.url}/api/v1/projects",
        json={"name": "Big"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as out:
        for _ in range(1024):  # 1 GiB of random bytes
            block = os.urandom(1024 * 1024)
            digest.update(block)
            out.write(block)
    first = labqueue(tmp_path, "upload", "Big", str(source), "--to", "raw")
    # Killed part way, as a dropped connection would leave it.
    deadline = time.monotonic() + 300
    offset = 0
    while time.monotonic() < deadline and offset < 512 * 1024 * 1024:  # half
        with app.app_context():
            offset = db.session.scalar(db.select(ResumableUpload.offset)) or 0
        time.sleep(0.05)
    first.kill()
    first.communicate()
    with app.app_context():
        kept = db.session.scalar(db.select(ResumableUpload.offset))
    assert 0 < kept < source.stat().st_size
    code, out = finish(labqueue(tmp_path, "upload", "Big", str(source), "--to", "raw"))
    assert code == 0, out
    assert "raw/big.bin" in out
    with app.app_context():
        from frontend.core.layout import disk_path
        from frontend.core.models import ProjectFile

        entry = db.session.scalar(db.select(ProjectFile).filter_by(path="raw/big.bin"))
        stored = disk_path(entry)
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0
    with open(stored, "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == digest.hexdigest()


@pytest.mark.docker
@pytest.mark.rabbitmq
def test_run_waits_to_the_end_and_download_fetches_the_outputs(
    stack_factory,  # noqa: F811
    tmp_path,
):
    stack = stack_factory(SITE_URL="http://127.0.0.1")  # the live server's host
    made = stack.app.test_cli_runner().invoke(
        args=["tokens", "create", "--email", "ada@cs.ox.ac.uk", "--name", "cli"]
    )
    with LiveServer(stack.app) as live:
        stack.start_worker()
        finish(
            labqueue(
                tmp_path, "login", "--url", live.url, "--token", made.output.strip()
            )
        )
        code, out = finish(
            labqueue(
                tmp_path,
                "run",
                "Data",
                "writer",
                "--param",
                "mode=file",
                "--param",
                "kib=3",
                "--wait",
            )
        )
        assert code == 0, out
        analysis = int(out.split("Analysis #", 1)[1].split()[0])
        assert f"Analysis #{analysis} succeeded." in out
        assert "3+0 records out" in out  # the log, followed as it ran
        target = tmp_path / "results"
        code, out = finish(
            labqueue(tmp_path, "download", str(analysis), "--out", str(target))
        )
        assert code == 0 and "1 files in" in out, out
        assert (target / "out.bin").read_bytes() == b"\0" * 3072
        # A failed run says why and exits non-zero, for scripts to notice.
        code, out = finish(
            labqueue(
                tmp_path,
                "run",
                "Data",
                "sleeper",
                "--param",
                "seconds=0",
                "--param",
                "exit_code=3",
                "--wait",
            )
        )
        assert code == 1 and "failed." in out and "exited with code 3" in out, out
