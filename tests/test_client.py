"""The `labqueue` command against a live server over real HTTP: login, projects,
a resumable upload interrupted by killing the client, resumed to an equal file;
scripts configured by the environment alone, uploads run again, parameters typed
by the pipeline's schema, and every refusal in one line."""

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
from frontend.core.models import Project, ProjectFile, ResumableUpload
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


def labqueue(home: Path, *args: str, environment: dict | None = None, **kwargs):
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), **(environment or {})}
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


def test_a_script_configured_by_the_environment_alone(app, server, tmp_path):
    live, token = server
    # No `labqueue login`: a CI job or a cluster script has only these two.
    environment = {"LABQUEUE_URL": live.url, "LABQUEUE_TOKEN": token}

    def cli(*args: str) -> tuple[int, str]:
        return finish(labqueue(tmp_path / "home", *args, environment=environment))

    code, out = cli("project", "create", "Run 4", "--description", "plates")
    assert code == 0 and "“Run 4” created." in out, out
    reads = tmp_path / "reads"
    reads.mkdir()
    (reads / "a.fastq").write_text("@r1\nACGT\n+\nIIII\n")
    code, out = cli("upload", "Run 4", str(reads), "--to", "raw")
    assert (code, out.splitlines()[-1]) == (0, "1 sent."), out
    code, out = cli("storage")
    assert code == 0 and "16 B of 20.0 GiB used, 20.0 GiB free: files 16 B" in out

    # Run again after adding a file, and after changing one: the new one goes,
    # the others are left as they are, and the summary says which and why.
    (reads / "b.fastq").write_text("@r2\nGGCC\n+\nIIII\n")
    code, out = cli("upload", "Run 4", str(reads), "--to", "raw")
    assert code == 0, out
    assert out.splitlines()[-1] == "1 sent, 1 already there (same contents)."
    # Changed to other bytes of the same size: the checksums tell them apart.
    (reads / "a.fastq").write_text("@r1\nTTTT\n+\nIIII\n")
    code, out = cli("upload", "Run 4", str(reads), "--to", "raw")
    assert code == 0, out
    assert "1 already there (same contents), 1 there already but different" in out
    assert "raw/reads/a.fastq; --on-clash replace sends them" in out
    # Replacing sends the changed file only; the unchanged one stays unsent.
    code, out = cli(
        "upload", "Run 4", str(reads), "--to", "raw", "--on-clash", "replace"
    )
    assert (code, out.splitlines()[-1]) == (
        0,
        "1 sent, 1 already there (same contents).",
    ), out
    assert "[1/2, 0 B of 32 B] raw/reads/a.fastq" in out
    with app.app_context():
        entry = db.session.scalar(
            db.select(ProjectFile).filter_by(path="raw/reads/a.fastq")
        )
        from frontend.core.layout import disk_path

        assert Path(disk_path(entry)).read_text() == "@r1\nTTTT\n+\nIIII\n"

    # One file the server refuses does not stop the others; the exit says so.
    (reads / "c.fastq").write_text("@r3\nTTTT\n+\nIIII\n")
    (reads / "bad\tname.fastq").write_text("x")
    code, out = cli("upload", "Run 4", str(reads), "--to", "raw")
    assert code == 1, out
    assert "bad\tname.fastq: not sent:" in out
    assert out.splitlines()[-1].startswith("1 sent, ") and "1 failed." in out
    assert "Traceback" not in out

    # The pipeline's parameters, then a run whose list comes from a pattern.
    code, out = cli("pipeline", "seq-qc")
    assert code == 0 and "sequences (list of files *.fa" in out, out
    code, out = cli("run", "Run 4", "seq-qc", "--param", "sequences=raw/reads/*.fastq")
    assert code == 0, out
    analysis = int(out.split("Analysis #", 1)[1].split()[0])
    import requests

    found = requests.get(
        f"{live.url}/api/v1/analyses/{analysis}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert found["parameters"]["sequences"] == [
        "raw/reads/a.fastq",
        "raw/reads/b.fastq",
        "raw/reads/c.fastq",
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("run", "Run 4", "seq-qc", "--param", "sequences=raw/*.fq"),
            "seq-qc: sequences: 'raw/*.fq' matches no file of the project",
        ),
        (
            ("run", "Run 4", "seq-qc", "--param", "colour=red"),
            "seq-qc: there is no parameter 'colour' (it has: sequences, vector_plots)",
        ),
        (
            ("run", "Run 4", "no-such-pipeline"),
            "There is no pipeline called “no-such-pipeline” here. (404)",
        ),
        (("run", "Run 5", "seq-qc"), "You have no project named 'Run 5'."),
    ],
)
def test_a_refusal_is_one_line_and_a_non_zero_exit(server, tmp_path, args, said):
    live, token = server
    environment = {"LABQUEUE_URL": live.url, "LABQUEUE_TOKEN": token}
    finish(labqueue(tmp_path, "project", "create", "Run 4", environment=environment))
    code, out = finish(labqueue(tmp_path, *args, environment=environment))
    assert code == 1
    assert out.strip() == f"Error: {said}"


def test_an_address_where_nothing_answers_is_one_line(tmp_path):
    environment = {"LABQUEUE_URL": "http://127.0.0.1:9", "LABQUEUE_TOKEN": "x"}
    code, out = finish(labqueue(tmp_path, "projects", environment=environment))
    assert code == 1
    assert out.strip() == (
        "Error: Cannot reach http://127.0.0.1:9: nothing answers there (is the "
        "address right, and the site up?)."
    )


def test_a_project_shared_with_the_caller_is_found_by_name(
    app, server, tmp_path, make_user, make_project
):
    from frontend.core.models import ProjectShare

    live, token = server
    bob = make_user(email="bob@cs.ox.ac.uk")
    bench = make_project(bob, "Bench")
    with app.app_context():
        db.session.add(ProjectShare(project_id=bench, email="ada@cs.ox.ac.uk"))
        db.session.commit()
    environment = {"LABQUEUE_URL": live.url, "LABQUEUE_TOKEN": token}
    code, out = finish(labqueue(tmp_path, "projects", environment=environment))
    assert (
        code == 0 and "Bench  (0 files, 0 analyses, shared with you read-only)" in out
    )
    # Found by its name; what a read-only member may not do is refused in a line.
    note = tmp_path / "note.txt"
    note.write_text("hello")
    code, out = finish(
        labqueue(tmp_path, "upload", "Bench", str(note), environment=environment)
    )
    assert code == 1, out
    assert "shared with you read-only" in out and "0 sent, 1 failed." in out


def test_add_outputs_puts_a_runs_outputs_into_a_project(app, server, tmp_path):
    from frontend.core.layout import analysis_dir
    from frontend.core.models import Analysis
    from tests.conftest import make_analysis

    live, token = server
    environment = {"LABQUEUE_URL": live.url, "LABQUEUE_TOKEN": token}
    finish(labqueue(tmp_path, "project", "create", "Counts", environment=environment))
    with app.app_context():
        project = db.session.scalar(db.select(Project.id).filter_by(name="Counts"))
    run = make_analysis(app, project, state="succeeded")
    with app.app_context():
        out = analysis_dir(db.session.get(Analysis, run)) / "output"
    out.mkdir(parents=True)
    (out / "summary.csv").write_text("column,mean\nx,1.5\n")
    (out / "notes.txt").write_text("notes")

    def add_outputs(*args: str) -> tuple[int, str]:
        return finish(
            labqueue(
                tmp_path,
                "add-outputs",
                str(run),
                "Counts",
                *args,
                environment=environment,
            )
        )

    code, out_text = add_outputs("--to", "qc", "--path", "summary.csv")
    assert code == 0, out_text
    assert "stored  qc/summary.csv" in out_text
    with app.app_context():
        paths = set(db.session.scalars(db.select(ProjectFile.path)))
    assert "qc/summary.csv" in paths and "qc/notes.txt" not in paths
    code, out_text = add_outputs("--path", "nope.csv")
    assert code == 1 and "“nope.csv” is not an output" in out_text
