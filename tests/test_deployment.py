"""The deployment files agree with the code they deploy."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_services_on_shared_volumes():
    services = compose()["services"]
    assert set(services) == {
        "rabbitmq",
        "postgres",
        "prepare",
        "web",
        "worker",
        "beat",
        "images",
    }
    for name in ("prepare", "web", "worker", "beat"):
        volumes = services[name]["volumes"]
        assert any(v.startswith("failed:/app/failedAnalyses") for v in volumes)
        # User data sits at the same path on the host and in the container, since
        # the worker passes those paths to the host's Docker engine.
        source, target = next(v for v in volumes if v.endswith("/userData")).split(
            "/userData:"
        )
        assert f"{source}/userData" == target
        env = services[name]["environment"]
        assert env["LABQUEUE_SQLALCHEMY_DATABASE_URI"].startswith(
            "postgresql+psycopg2://"
        )
        assert env["LABQUEUE_CELERY_BROKER_URL"].startswith("amqp://")
        assert env["LABQUEUE_LOG_TO_STDERR"] == "true"
        assert services[name]["env_file"] == ".env"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["worker"]["volumes"]
    assert services["worker"]["pid"] == "host"  # output caps read /proc
    assert services["worker"]["command"][:3] == ["celery", "-A", "frontend.make_celery"]
    assert services["beat"]["command"][3] == "beat"


def test_the_others_wait_for_prepare_which_migrates_as_the_apps_user():
    services = compose()["services"]
    assert services["prepare"]["user"] == "0:0"
    assert services["prepare"]["command"] == ["deploy/prepare.sh"]
    for name in ("web", "worker", "beat", "images"):
        condition = services[name]["depends_on"]["prepare"]["condition"]
        assert condition == "service_completed_successfully", name
    prepare = (ROOT / "deploy" / "prepare.sh").read_text()
    assert "setpriv --reuid 10001 --regid 10001" in prepare
    assert prepare.index("chown 10001:10001") < prepare.index("db upgrade")
    assert "healthcheck" in services["web"]


def test_workers_keep_their_own_group_and_join_the_sockets():
    worker = compose()["services"]["worker"]
    assert worker["user"] == "10001:10001"
    assert worker["group_add"][0].startswith("${DOCKER_GID:?")
    assert worker["environment"]["LABQUEUE_WORKER_HOST"].startswith(
        "${LABQUEUE_WORKER_HOST:?"
    )
    assert worker["deploy"]["replicas"] == "${LABQUEUE_WORKERS:-1}"


def test_compose_settings_are_documented_keys():
    documented = (ROOT / "config_example.py").read_text()
    env = compose()["services"]["web"]["environment"]
    for variable in env:
        assert f"Env: {variable}" in documented or f"{variable}," in documented, (
            variable
        )


def test_web_image_serves_with_gunicorn_as_its_own_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", dockerfile, re.MULTILINE)
    command = dockerfile.split("CMD", 1)[1]
    assert "gunicorn" in command and "frontend:create_app()" in command
    assert "USER labqueue" in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_the_image_installs_exactly_the_locked_requirements():
    # tests/test_requirements.py checks the locks themselves.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.txt" in dockerfile


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to another user: needs root")
def test_a_worker_outside_the_sockets_group_is_told_which_group_to_join():
    # The engine's socket belongs to a group the worker is not in (the host's
    # docker group is not the image's): the worker says which group, not "build
    # the image".
    folder = Path(tempfile.mkdtemp(prefix="labqueue-socket-"))
    folder.chmod(0o755)
    path = folder / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        server.listen()
        os.chown(path, 0, 4242)
        path.chmod(0o660)
        probe = (
            "from backend.runners import EngineUnavailable\n"
            "from backend.runners.docker import docker_client\n"
            "try:\n    docker_client()\n"
            "except EngineUnavailable as exc:\n    print(exc)\n"
        )
        said = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
            + [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**os.environ, "DOCKER_HOST": f"unix://{path}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.close()
        shutil.rmtree(folder)
    assert said.returncode == 0, said.stderr
    assert f"may not use {path}, which belongs to group 4242" in said.stdout
    assert "DOCKER_GID=4242 in .env" in said.stdout
