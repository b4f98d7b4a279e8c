"""The deployment files agree with the code they deploy."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_four_services_on_shared_volumes():
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "postgres", "web", "worker"}
    for name in ("web", "worker"):
        mounts = {volume.split(":")[1] for volume in services[name]["volumes"]}
        assert mounts == {"/app/userData", "/app/failedAnalyses", "/app/logs"}
        env = services[name]["environment"]
        assert env["LABQUEUE_SQLALCHEMY_DATABASE_URI"].startswith(
            "postgresql+psycopg2://"
        )
        assert env["LABQUEUE_CELERY_BROKER_URL"].startswith("amqp://")
    assert services["worker"]["command"][:3] == ["celery", "-A", "frontend.make_celery"]


def test_compose_settings_are_documented_keys():
    documented = (ROOT / "config_example.py").read_text()
    env = compose()["services"]["web"]["environment"]
    for variable in env:
        assert f"Env: {variable}" in documented or f"{variable}," in documented, (
            variable
        )


def test_web_image_migrates_then_serves_with_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=", dockerfile, re.MULTILINE)
    command = dockerfile.split("CMD", 1)[1]
    assert command.index("db upgrade") < command.index("gunicorn")
    assert "'frontend:create_app()'" in command
    assert "USER labqueue" in dockerfile


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), line
