"""The Docker Compose deployment, brought up on this machine's engine as the
README's "Deploying with Docker Compose" says, command for command: `.env` written
once, the stack built and started, the pipeline images built by the `images`
service, an admin made. A researcher registers (the mail goes through a real SMTP
server), runs table-profiler and downloads its outputs. Then the workers are scaled
to two and every container is recreated: the same secrets let the user in, the
history is intact, and both workers serve one host name.

What differs from a sysadmin's host: where the engine has no `rabbitmq:3.13` or
`postgres:16` (no registry here), stand-ins are built under those names first
(tests/compose/); the build and the pipelines use the local Debian base, as the
README says for hosts without a registry; the checkout is a copy, so that its
`.env` is the test's own."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from backend.images import LOCAL_BASE_IMAGE
from tests.conftest import PASSWORD, Auth, csrf_token
from tests.services import remove_site_containers, require_compose
from tests.smtp import SMTPServer, link_in
from tests.test_accounts import register

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "tests" / "compose"
DATA = ROOT / "tests" / "data"


class Site:
    """The deployment's web app over HTTP, as a browser reaches it."""

    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()
        # As browsers do, a GET is sent again when gunicorn closed the idle
        # keep-alive connection just as the request went out.
        retry = Retry(total=2, allowed_methods=["GET"], backoff_factor=0.2)
        self.session.mount(base, HTTPAdapter(max_retries=retry))

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self._url(path), timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        # The Flask test client's word, for helpers written for it.
        if "follow_redirects" in kwargs:
            kwargs["allow_redirects"] = kwargs.pop("follow_redirects")
        return self.session.post(self._url(path), timeout=60, **kwargs)

    def _url(self, path: str) -> str:
        """A path on the site; a link from a mail is taken whole."""
        return path if path.startswith(self.base) else self.base + path


class Deployment:
    """A copy of the checkout, with the compose commands run in it."""

    def __init__(self, folder: Path, compose: list[str]):
        self.folder = folder
        self.compose = compose
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": f"labqueue-test-{uuid.uuid4().hex[:8]}",
        }

    @property
    def project(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    def run(self, *command: str, timeout: float = 900) -> str:
        """A command in the checkout; its output, or the test fails showing it."""
        done = subprocess.run(
            command,
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"{' '.join(command)} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
        return done.stdout + done.stderr

    def up(self, *args: str, timeout: float = 900) -> str:
        return self.run(*self.compose, *args, timeout=timeout)

    def set_env(self, **values: str) -> None:
        """Edit .env as an admin would: the keys given take these values."""
        path = self.folder / ".env"
        lines = path.read_text().splitlines()
        kept = [line for line in lines if line.partition("=")[0] not in values]
        path.write_text(
            "\n".join(kept + [f"{k}={v}" for k, v in values.items()]) + "\n"
        )

    def env_value(self, key: str) -> str:
        for line in (self.folder / ".env").read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and name == key:
                return value
        raise KeyError(key)

    def containers(self, service: str) -> list[dict]:
        ids = self.up("ps", "-q", service).split()
        if not ids:
            return []
        shown = self.run("docker", "inspect", *ids)
        return json.loads(shown)

    def site(self) -> str:
        """The deployment's name on the engine's containers: as every deployment
        without SITE_ID, a digest of the database URL its workers use."""
        url = (
            f"postgresql+psycopg2://labqueue:{self.env_value('POSTGRES_PASSWORD')}"
            "@postgres:5432/labqueue"
        )
        return hashlib.sha256(url.encode()).hexdigest()[:12]

    def sql(self, query: str) -> list[str]:
        out = self.up("exec", "-T", "postgres", "psql", "-U", "labqueue", "-tAc", query)
        return [line for line in out.splitlines() if line.strip()]


def _copy_checkout(target: Path) -> None:
    """The files of this checkout as they are now (committed or not)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _standins(client) -> None:
    """rabbitmq:3.13 and postgres:16, built from tests/compose/ where the engine
    lacks them (never pulled: only the package registries are reachable)."""
    import docker.errors

    for name, tag in (("rabbitmq", "rabbitmq:3.13"), ("postgres", "postgres:16")):
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            subprocess.run(
                ["docker", "build", "--network", "host", "-q", "-t", tag]
                + [
                    "--build-arg",
                    f"BASE_IMAGE={LOCAL_BASE_IMAGE}",
                    str(STANDINS / name),
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )


def _wait_healthy(site: Site, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if site.get("/health").status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(2)
    raise AssertionError(f"{site.base}/health never answered 200")


def _wait_state(site: Site, analysis_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = site.get(f"/analyses/{analysis_id}/status").json()
        if status["state"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(2)
    raise AssertionError(f"analysis {analysis_id} did not end: {status}")


def _run_table_profiler(site: Site, project: int) -> int:
    url = f"/projects/{project}/run/table-profiler"
    form = {"p_tables": "expression.csv", "p_bins": "15", "p_max_rows": "0"}
    token = csrf_token(site.get(url).text)
    reply = site.post(url, data={**form, "csrf_token": token}, allow_redirects=False)
    assert reply.status_code == 302, reply.text
    return int(reply.headers["Location"].rsplit("/", 1)[1])


@pytest.fixture
def deployment(tmp_path, images):
    # `images`: the local Debian base (what the stand-ins, the app and the
    # pipelines build on here) and the pipelines' images on it.
    compose = require_compose()
    _standins(images)
    folder = tmp_path / "labqueue"
    folder.mkdir()
    _copy_checkout(folder)
    deployment = Deployment(folder, compose)
    yield deployment
    # What the services said, shown when the test failed.
    logs = subprocess.run(
        [*compose, "logs", "--no-color", "--tail", "150"],
        cwd=folder,
        env=deployment.env,
        capture_output=True,
        text=True,
    )
    print(logs.stdout[-30000:])
    deployment.up("--profile", "tools", "down", "-v", "--remove-orphans", "-t", "5")
    # A run its workers did not see to the end (the test failed meanwhile) must
    # not stay on the engine for other tests to find.
    if (folder / ".env").exists():
        remove_site_containers(deployment.site())


def test_the_compose_deployment_as_the_readme_says(deployment, tmp_path):
    with socket.socket() as free:  # a loopback port for the web app
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    site = Site(f"http://127.0.0.1:{port}")
    data_root = tmp_path / "srv"

    # Once: .env with the secrets, the data root and the docker group.
    deployment.run(
        "make", "compose-env", f"DATA_ROOT={data_root}", f"SITE_URL={site.base}"
    )
    env_file = deployment.folder / ".env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    written = env_file.read_text()
    assert deployment.env_value("DOCKER_GID") == str(
        os.stat("/var/run/docker.sock").st_gid
    )
    assert deployment.env_value("LABQUEUE_DATA_ROOT") == str(data_root)
    said = deployment.run("make", "compose-env")
    assert "has every setting already; nothing was changed" in said
    assert env_file.read_text() == written  # the secrets stand

    # The admin's edits: the port, mail, no registry here (the local base, and an
    # engine without a bridge network builds on the host's), no DNS to check
    # addresses against.
    # This machine reaches PyPI through a proxy that inspects TLS.
    shutil.copy(
        "/etc/ssl/certs/ca-certificates.crt", deployment.folder / "deploy/pip-ca.pem"
    )
    deployment.set_env(
        LABQUEUE_HTTP_PORT=str(port),
        LABQUEUE_BASE_IMAGE=LOCAL_BASE_IMAGE,
        LABQUEUE_BUILD_NETWORK="host",
        LABQUEUE_SECURITY_EMAIL_VALIDATOR_ARGS='{"check_deliverability": false}',
        LABQUEUE_ADMINS='["ops@cs.ox.ac.uk"]',
    )
    # Mail goes to a real SMTP server on this machine, at the address the
    # containers reach it by: their network's gateway, known once it exists (made
    # with a service that waits for none other).
    deployment.up("up", "--no-start", "rabbitmq")
    network = json.loads(
        deployment.run("docker", "network", "inspect", f"{deployment.project}_default")
    )
    gateway = network[0]["IPAM"]["Config"][0]["Gateway"]
    smtp = SMTPServer(host=gateway)
    smtp.start()
    try:
        deployment.set_env(
            LABQUEUE_MAIL_SERVER=gateway, LABQUEUE_MAIL_PORT=str(smtp.port)
        )
        _first_week(deployment, site, smtp)
    finally:
        smtp.stop()


def _first_week(deployment: Deployment, site: Site, smtp: SMTPServer) -> None:
    deployment.up("up", "-d", "--build")
    deployment.up("run", "--rm", "images", timeout=1800)
    made = deployment.up(
        "exec",
        "-T",
        "web",
        "flask",
        "--app",
        "frontend",
        "create-admin",
        "--email",
        "admin@cs.ox.ac.uk",
    )
    assert "Generated password (shown once): " in made
    # The name its runs carry on the engine is the one the test cleans up by.
    said = deployment.up(
        "exec",
        "-T",
        "web",
        "python3",
        "-c",
        "from frontend import create_app\n"
        "from frontend.core.runners import site_id\n"
        "with create_app().app_context(): print('site', site_id())",
    )
    assert f"site {deployment.site()}" in said
    _wait_healthy(site)

    # A researcher registers, confirms by mail, and signs in.
    register(site, "ada@cs.ox.ac.uk")
    confirm = smtp.wait_for("ada@cs.ox.ac.uk", "Confirm", timeout=120)
    assert site.get(link_in(confirm, "/confirm/")).status_code == 200
    Auth(site).login("ada@cs.ox.ac.uk", PASSWORD)
    assert "Ada" in site.get("/projects/").text

    # A project, a table, a run of table-profiler, its outputs.
    token = csrf_token(site.get("/projects/new").text)
    created = site.post(
        "/projects/new",
        data={"name": "Atlas", "description": "", "csrf_token": token},
        allow_redirects=False,
    )
    assert created.status_code == 302, created.text
    project = int(created.headers["Location"].rsplit("/", 1)[1])
    uploaded = site.post(
        f"/projects/{project}/upload",
        params={"path": "expression.csv"},
        data=(DATA / "expression.csv").read_bytes(),
        headers={
            "X-CSRFToken": csrf_token(site.get(f"/projects/{project}").text),
            "Accept": "application/json",
            "Content-Type": "application/octet-stream",
        },
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    first = _run_table_profiler(site, project)
    ended = _wait_state(site, first)
    assert ended["state"] == "succeeded", ended
    outputs = zipfile.ZipFile(
        io.BytesIO(site.get(f"/analyses/{first}/outputs.zip").content)
    )
    assert "summary.csv" in outputs.namelist()
    rows = list(csv.DictReader(io.StringIO(outputs.read("summary.csv").decode())))
    length = next(row for row in rows if row["column"] == "length_bp")
    with (DATA / "expression.csv").open() as table:
        lengths = [float(row["length_bp"]) for row in csv.DictReader(table)]
    assert int(length["count"]) == len(lengths) == 40
    assert float(length["mean"]) == pytest.approx(statistics.mean(lengths))
    smtp.wait_for("ada@cs.ox.ac.uk", "table-profiler on Atlas finished", timeout=120)
    # The outputs belong to the app's user, not to the host's docker group.
    data_root = Path(deployment.env_value("LABQUEUE_DATA_ROOT"))
    written = next((data_root / "userData").rglob("summary.csv")).stat()
    assert (written.st_uid, written.st_gid) == (10001, 10001)

    # Two workers, kept at every later `up`; then every container made anew.
    deployment.set_env(LABQUEUE_WORKERS="2")
    deployment.up("up", "-d")
    deployment.up("up", "-d", "--force-recreate")
    workers = deployment.containers("worker")
    assert len(workers) == 2
    host = deployment.env_value("LABQUEUE_WORKER_HOST")
    for worker in workers:
        assert f"LABQUEUE_WORKER_HOST={host}" in worker["Config"]["Env"]
    _wait_healthy(site)

    # The same secrets: the user's session cookie and password still work, the
    # history is intact, and a new run is served by this host's workers.
    again = Site(site.base)
    Auth(again).login("ada@cs.ox.ac.uk", PASSWORD)
    history = again.get("/analyses/history").text
    assert f"/analyses/{first}" in history
    assert "Atlas" in site.get("/projects/").text
    second = _run_table_profiler(again, project)
    assert _wait_state(again, second)["state"] == "succeeded"
    assert deployment.sql("SELECT DISTINCT worker FROM analysis") == [host]
    assert deployment.sql("SELECT host FROM watcher_lease") == [host]
