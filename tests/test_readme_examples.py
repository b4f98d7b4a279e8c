"""The README's scripting examples, run as a reader would: every `curl`, `flask`
and `labqueue` line of its "Scripts: the REST API" section (up to the
compliance suite's commands, run by test_tes_integration), in order, against a
new site (a live server, RabbitMQ, a worker, Docker, the real pipelines), each
command as written but for the server's port. The lines are read from the
README itself, so an example that no longer works fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from frontend.core.extensions import db
from frontend.core.layout import disk_path
from frontend.core.models import ProjectFile
from tests.conftest import LiveServer
from tests.services import unavailable
from tests.test_analyses_integration import stack_factory  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DATA = ROOT / "tests" / "data"
WRITTEN_URL = "http://127.0.0.1:5000"


def section_commands() -> list[str]:
    """The shell commands of the README's scripting section, in order, each with
    its continuation lines joined and its comment dropped."""
    text = README.read_text()
    section = text.split("## Scripts: the REST API", 1)[1].split("\n## ", 1)[0]
    # Up to the compliance suite's own commands, which tests/test_tes_integration
    # runs its way (in a virtualenv of its own).
    section = section.split("The GA4GH compliance suite", 1)[0]
    blocks = re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.S)
    commands, pending = [], ""
    for language, block in blocks:
        if language == "python":  # run whole, by the virtualenv's Python
            commands.append(f".venv/bin/python -c {shlex.quote(block)}")
            continue
        for line in block.splitlines():
            if pending.endswith("\\"):  # continued: the backslash goes
                pending = pending[:-1] + " " + line.strip()
            elif pending:  # inside a quoted argument that spans lines
                pending += "\n" + line
            else:
                pending = line
            if pending.endswith("\\") or pending.count("'") % 2:
                continue
            command = re.sub(r"\s+#\s[^'\"]*$", "", pending)  # a trailing comment
            commands.append(command.strip())
            pending = ""
    assert not pending, pending
    return commands


def test_the_section_is_what_this_test_expects():
    """A guard: the examples are found (three blocks' worth), so a README whose
    examples moved elsewhere does not pass by running nothing."""
    commands = section_commands()
    assert len(commands) >= 25
    assert sum(c.startswith("curl ") for c in commands) >= 8
    assert sum(c.startswith(".venv/bin/labqueue ") for c in commands) >= 14
    assert sum("import tes" in c for c in commands) == 1


def test_every_scripting_example_of_the_readme_works(stack_factory, tmp_path):  # noqa: F811
    from backend.manifest import PIPELINES_DIR

    if shutil.which("curl") is None:
        unavailable("curl, which the README's examples use (apt-get install curl)")
    stack = stack_factory(
        project=None, PIPELINES_DIR=str(PIPELINES_DIR), SITE_URL="http://127.0.0.1"
    )
    # What the reader has in their folder: a file, and a folder of reads.
    work = tmp_path / "work"
    (work / "reads").mkdir(parents=True)
    shutil.copy(DATA / "reads.fastq.gz", work / "reads.fastq.gz")
    shutil.copy(DATA / "reads.fastq.gz", work / "reads" / "a.fastq.gz")
    variables: dict[str, str] = {}
    with LiveServer(stack.app) as live:
        stack.start_worker()
        for command in section_commands():
            command = command.replace(WRITTEN_URL, live.url)
            stdout, out = _run(stack, command, work, tmp_path, variables)
            _check(command, stdout, out)
            if "/ga4gh/tes/v1/tasks/" in command:
                curl_task = command
        # The task of the curl example has run, and its output is in project 1.
        _wait_for_task(live.url, variables["TOKEN"], curl_task)
    with stack.app.app_context():
        made = db.session.scalar(
            db.select(ProjectFile).filter_by(project_id=1, path="counts/lines.txt")
        )
        assert made is not None and made.provenance["pipeline"] == "tes"
        # The chained tasks: 1200 lines of reads in chunks of 400, then counted.
        counts = db.session.scalar(
            db.select(ProjectFile).filter_by(project_id=1, path="counts.txt")
        )
        chunks = db.session.scalars(
            db.select(ProjectFile.path).filter(ProjectFile.path.startswith("chunks/"))
        ).all()
        assert sorted(chunks) == ["chunks/part-aa", "chunks/part-ab", "chunks/part-ac"]
        assert b"1200 total" in disk_path(counts).read_bytes()
        # The CLI's download and add-outputs did their work: the outputs of
        # analysis 3 are in results/ and in project 2's qc/ folder.
        added = db.session.scalars(
            db.select(ProjectFile.path).filter(
                ProjectFile.project_id == 2,
                ProjectFile.path.startswith("qc/"),
                ~ProjectFile.is_dir,
            )
        ).all()
    downloaded = sorted(
        p.relative_to(work / "results").as_posix()
        for p in (work / "results").rglob("*")
        if p.is_file()
    )
    assert downloaded and sorted(path.removeprefix("qc/") for path in added) == (
        downloaded
    )


def _run(
    stack, command: str, work: Path, home: Path, variables: dict
) -> tuple[str, str]:
    """Run one README command; its standard output, and all it printed.
    `flask --app frontend …` lines run through the stack's app (its database),
    as the reader's would on their site."""
    assignment = re.match(r"^(\w+)=\$\((.*)\)$", command)
    inner = assignment[2] if assignment else command
    if inner.startswith(".venv/bin/flask --app frontend "):
        args = shlex.split(inner.removeprefix(".venv/bin/flask --app frontend "))
        result = stack.app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, (command, result.output)
        stdout = out = result.output
    else:
        environment = {
            **os.environ,
            **variables,
            "XDG_CONFIG_HOME": str(home / "config"),
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        }
        environment.pop("LABQUEUE_URL", None)
        environment.pop("LABQUEUE_TOKEN", None)
        # `.venv/bin/…` as written, from a folder of the reader's own.
        (work / ".venv").unlink(missing_ok=True)
        (work / ".venv").symlink_to(ROOT / ".venv")
        process = subprocess.run(
            ["bash", "-c", inner],
            cwd=work,
            env=environment,
            input=variables.get("TOKEN", "") + "\n",  # what `login` asks for
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,  # no terminal: the prompt reads stdin
        )
        stdout, out = process.stdout, process.stdout + process.stderr
        assert process.returncode == 0, (command, out)
    if assignment:
        variables[assignment[1]] = stdout.strip()
    return stdout, out


def _check(command: str, stdout: str, out: str) -> None:
    """Beyond the exit status: the server accepted what was sent."""
    assert "Traceback" not in out, (command, out)
    if command.startswith("curl "):
        answer = json.loads(stdout)
        assert not (isinstance(answer, dict) and "error" in answer), (command, out)
    if "labqueue run" in command and "--wait" in command:
        assert "succeeded." in out, (command, out)
    if "labqueue link" in command:
        assert "/s/lqs_" in out, (command, out)
    if "import tes" in command:  # the chained tasks
        assert stdout.strip() == "COMPLETE", (command, out)


def _wait_for_task(url: str, token: str, command: str) -> None:
    import time

    task_id = re.search(r"/tasks/(\d+)", command)[1]
    deadline = time.monotonic() + 180
    state = None
    while time.monotonic() < deadline:
        state = requests.get(
            f"{url}/ga4gh/tes/v1/tasks/{task_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()["state"]
        if state in ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"):
            break
        time.sleep(0.5)
    assert state == "COMPLETE", state
