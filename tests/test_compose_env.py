"""`make compose-env` (deploy/compose_env.py) without Docker Compose: a new .env
holds every setting, private to its owner; run again, it keeps every value and
adds only what is missing, asking the host nothing it does not need."""

from __future__ import annotations

import pytest

from deploy import compose_env


def values(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found[key] = value
    return found


@pytest.fixture
def socket_file(tmp_path, monkeypatch):
    socket = tmp_path / "docker.sock"
    socket.touch()
    monkeypatch.setattr(compose_env, "DOCKER_SOCKET", socket)
    return socket


def test_a_new_env_holds_every_setting_for_its_owner_only(tmp_path, socket_file):
    env = tmp_path / ".env"
    added = compose_env.write(env, "/srv/lab", "https://lab.example")
    written = values(env)
    assert added == list(written) and len(written) >= 15
    assert written["DOCKER_GID"] == str(socket_file.stat().st_gid)
    assert written["LABQUEUE_DATA_ROOT"] == "/srv/lab"
    assert len(written["LABQUEUE_SECRET_KEY"]) == 64
    assert env.stat().st_mode & 0o777 == 0o600


def test_run_again_it_keeps_every_value_and_needs_no_docker(
    tmp_path, socket_file, monkeypatch
):
    env = tmp_path / ".env"
    compose_env.write(env, "/srv/lab", "https://lab.example")
    before = env.read_text()
    # On a host without the socket (a backup restored elsewhere): nothing asked.
    monkeypatch.setattr(compose_env, "DOCKER_SOCKET", tmp_path / "gone.sock")
    assert compose_env.write(env, "/elsewhere", "http://other") == []
    assert env.read_text() == before
    # A setting a newer version needs is added, the rest left as they were.
    kept = values(env)
    env.write_text(before.replace("LABQUEUE_WORKERS=1\n", ""))
    assert compose_env.write(env, "/elsewhere", "http://other") == ["LABQUEUE_WORKERS"]
    assert values(env) == kept  # the secrets and data root as they were
    # Missing the socket's group where there is no socket: said, nothing written.
    env.write_text(before.replace("DOCKER_GID=", "# DOCKER_GID="))
    with pytest.raises(SystemExit, match="install and start Docker"):
        compose_env.write(env, "/srv/lab", "https://lab.example")
    assert "\nDOCKER_GID=" not in env.read_text()
