"""Access to the real services integration tests need (RabbitMQ, Chromium, …).

Locally a missing service skips its tests with the reason. In CI (``CI`` set, as
``.ci/run`` does) a missing service fails them instead: nothing is skipped there.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

AMQP_URL = os.environ.get(
    "LABQUEUE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"
)
CHROMIUM = os.environ.get("LABQUEUE_TEST_CHROMIUM", "/usr/bin/chromium")
# A PostgreSQL role that may create databases; each test gets a database of its own.
POSTGRES_URL = os.environ.get(
    "LABQUEUE_TEST_POSTGRES_URL",
    "postgresql+psycopg2://labqueue:labqueue@127.0.0.1:5432/postgres",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def port_open(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), 2):
            return True
    except OSError:
        return False


def require_rabbitmq() -> str:
    if not port_open(AMQP_URL, 5672):
        unavailable(f"no RabbitMQ at {AMQP_URL} (start it: rabbitmq-server -detached)")
    return AMQP_URL


def require_postgres() -> str:
    if not port_open(POSTGRES_URL, 5432):
        unavailable(f"no PostgreSQL at {POSTGRES_URL} (see .ci/run)")
    return POSTGRES_URL


def require_slurm() -> None:
    """A Slurm cluster taking jobs (tests/slurm/start makes a one-node one)."""
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        unavailable("no Slurm commands (apt-get install slurm-wlm munge)")
    shown = subprocess.run(
        ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True
    )
    if shown.returncode != 0 or not shown.stdout.strip():
        unavailable(f"no Slurm cluster answers (run tests/slurm/start): {shown.stderr}")


def require_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


def require_docker():
    """A Docker SDK client for a running engine."""
    import docker

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # any failure means no usable engine
        unavailable(f"no Docker engine ({exc}); start one: dockerd --bridge=none &")
    return client


def remove_site_containers(site: str) -> None:
    """Remove what a test's workers left on the engine (runs still going when
    their worker stopped), so that no later test finds them; only this site's."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=10)
        leftovers = client.containers.list(
            all=True, filters={"label": f"labqueue.site={site}"}, ignore_removed=True
        )
    except docker.errors.DockerException:
        return  # no engine: these tests ran no container
    for container in leftovers:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
    client.close()


def require_compose() -> list[str]:
    """The Docker Compose command this machine has: docker-compose (1.29, Debian's)
    or the v2 plugin."""
    import shutil
    import subprocess

    if shutil.which("docker-compose"):
        return ["docker-compose"]
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    unavailable("no Docker Compose (apt-get install docker-compose)")
    return []
