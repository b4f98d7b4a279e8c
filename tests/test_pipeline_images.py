"""`flask pipelines prepare`, which `make run` calls: images built when missing or
changed and left alone otherwise, a clear stop when no base image can be had, and
what the web is told about each pipeline."""

from __future__ import annotations

import shutil
import uuid

import pytest

import backend.images
from backend.images import SOURCE_LABEL
from frontend.core.extensions import db
from frontend.core.models import PipelineImage
from tests.conftest import BUSYBOX_IMAGE, TEST_PIPELINES


@pytest.fixture
def pipelines_dir(app, tmp_path):
    """The sleeper test pipeline under an image name of its own."""
    tag = f"labqueue-test/prepare-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "pipelines"
    shutil.copytree(TEST_PIPELINES / "sleeper", root / "sleeper")
    manifest = root / "sleeper" / "manifest.toml"
    manifest.write_text(
        manifest.read_text().replace('"labqueue-test/sleeper"', f'"{tag}"')
    )
    app.config.update(PIPELINES_DIR=str(root), RUNNER="docker")
    return root, f"{tag}:1"


def recorded(app) -> dict[str, PipelineImage]:
    with app.app_context():
        rows = db.session.scalars(db.select(PipelineImage)).all()
        for row in rows:
            db.session.expunge(row)
        return {row.pipeline: row for row in rows}


@pytest.mark.docker
def test_prepare_builds_what_is_missing_then_nothing(
    app, runner, docker_client, pipelines_dir
):
    root, tag = pipelines_dir
    app.config["PIPELINE_BASE_IMAGE"] = BUSYBOX_IMAGE
    try:
        first = runner.invoke(args=["pipelines", "prepare"])
        assert first.exit_code == 0, first.output
        assert f"Building {tag} on {BUSYBOX_IMAGE}" in first.output
        image = docker_client.images.get(tag)
        assert image.labels[SOURCE_LABEL]
        assert recorded(app)["sleeper"].ready

        again = runner.invoke(args=["pipelines", "prepare"])
        assert again.exit_code == 0, again.output
        assert "Pipeline images are up to date (1)." in again.output
        assert "Building" not in again.output
        assert docker_client.images.get(tag).id == image.id

        script = root / "sleeper" / "Dockerfile"
        script.write_text(script.read_text() + "\n# a change\n")
        changed = runner.invoke(args=["pipelines", "prepare"])
        assert f"Building {tag}" in changed.output
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_prepare_stops_with_what_to_do_when_no_base_can_be_had(
    app, runner, docker_client, pipelines_dir, monkeypatch
):
    _root, tag = pipelines_dir
    # A registry that refuses connections, and a stand-in that is not there and,
    # as for a user without root, cannot be made.
    app.config["PIPELINE_BASE_IMAGE"] = "127.0.0.1:9/labqueue-test/base:1"
    app.config["PIPELINE_LOCAL_BASE_IMAGE"] = "labqueue-test/no-such-base:1"
    monkeypatch.setattr(
        backend.images,
        "local_base_blocker",
        lambda: "making it needs root, and this is user id 1000",
    )
    result = runner.invoke(args=["pipelines", "prepare"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "Labqueue cannot get its pipeline images, so it was not started." in output
    assert "127.0.0.1:9/labqueue-test/base:1, which this Docker engine" in output
    assert "needs root, and this is user id 1000" in output
    make_base = "sudo .venv/bin/python -m backend.images labqueue-test/no-such-base:1"
    assert make_base in output
    assert "LABQUEUE_PIPELINE_BASE_IMAGE" in output
    assert not backend.images.has_image(docker_client, tag)
    assert recorded(app) == {}


def test_prepare_without_an_engine(app, runner, pipelines_dir, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    refused = runner.invoke(args=["pipelines", "prepare"])
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert "No Docker engine answers" in said and "was not started" in said
    assert "LABQUEUE_RUNNER=local make run" in said
    assert recorded(app) == {}  # no silent fallback to the local runner

    app.config["RUNNER"] = "local"  # only when asked for
    local = runner.invoke(args=["pipelines", "prepare"])
    assert local.exit_code == 0, local.output
    assert "WITHOUT a sandbox" in local.output
    assert recorded(app)["sleeper"].runner == "local"
    assert "without a sandbox" in app.test_client().get("/").text


def test_a_worker_without_its_engine_tells_admins_to_mend_the_engine(
    app, pipelines_dir, monkeypatch
):
    from frontend.worker.images import check_images

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with app.app_context():
        assert check_images() == {"sleeper": False}
    problem = recorded(app)["sleeper"].problem
    assert "no Docker engine answers on this host" in problem
    assert "Start the engine, or let the worker use it" in problem
    assert "pipelines build" not in problem  # building would not help


def test_making_the_base_by_hand_says_why_it_cannot(monkeypatch, capsys):
    monkeypatch.setattr(backend.images.os, "geteuid", lambda: 1000)
    assert backend.images.main(["labqueue-test/base:1"]) == 1
    said = capsys.readouterr().err
    assert "labqueue-test/base:1 was not made: making it needs root" in said


@pytest.mark.docker
def test_making_the_base_again_leaves_the_one_there(docker_client, capsys):
    assert backend.images.main([BUSYBOX_IMAGE]) == 0
    assert (
        f"{BUSYBOX_IMAGE} is here already; nothing to make." in capsys.readouterr().out
    )


@pytest.mark.docker
def test_build_before_the_database_is_set_up_builds_and_says_so(
    tmp_path, smtp, docker_client, pipelines_dir
):
    from frontend import create_app
    from tests.conftest import base_config

    _root, tag = pipelines_dir
    fresh = create_app(
        {
            **base_config(tmp_path / "fresh", smtp),
            "PIPELINES_DIR": str(pipelines_dir[0]),
            "RUNNER": "docker",
        }
    )
    try:
        result = fresh.test_cli_runner().invoke(
            args=["pipelines", "build", "--base-image", BUSYBOX_IMAGE, "sleeper"]
        )
        assert result.exit_code == 0, result.output
        assert "the database is not set up yet" in result.output
        assert "Traceback" not in result.output
        assert docker_client.images.get(tag)
    finally:
        docker_client.images.remove(tag, force=True)
