"""GA4GH TES requests without a worker: what a task may be, how it reads back in
each view, the list's filters and pages, cancelling, and who may see what."""

from __future__ import annotations

import base64
import os

import pytest

from frontend.core.extensions import db
from frontend.core.models import Analysis, AnalysisState, OutgoingMail, TesTask
from tests.test_api import ADA, BOB, bearer, token_for  # noqa: F401 (a fixture)

TES = "/ga4gh/tes/v1"
IMAGE = "labqueue-test/busybox:1"


@pytest.fixture
def ada(app, make_user, token_for, runner):  # noqa: F811
    make_user(email=ADA)
    assert runner.invoke(args=["tes", "allow-image", IMAGE]).exit_code == 0
    return bearer(token_for(ADA))


def task(*commands: list[str], **fields) -> dict:
    commands = commands or (["echo", "hello"],)
    return {"executors": [{"image": IMAGE, "command": c} for c in commands], **fields}


def create(client, headers, body) -> str:
    reply = client.post(f"{TES}/tasks", json=body, headers=headers)
    assert reply.status_code == 200, reply.json
    return reply.json["id"]


def test_service_info_is_open_and_says_what_this_server_is(client):
    info = client.get(f"{TES}/service-info").json
    assert info["type"] == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info["storage"] == ["labqueue://projects/<project id>/<path>"]
    assert info["organization"]["name"] == "Labqueue"


def test_a_task_is_queued_and_reads_back_in_each_view(app, client, ada):
    body = task(
        ["sh", "-c", "cat /in/a.txt"],
        name="greet",
        description="says hello",
        tags={"run": "1"},
        inputs=[{"path": "/in/a.txt", "content": "hello\n"}],
    )
    task_id = create(client, ada, body)
    minimal = client.get(f"{TES}/tasks/{task_id}", headers=ada).json
    assert minimal == {"id": task_id, "state": "QUEUED"}
    basic = client.get(f"{TES}/tasks/{task_id}?view=BASIC", headers=ada).json
    assert basic["name"] == "greet" and basic["tags"] == {"run": "1"}
    assert basic["inputs"] == [{"path": "/in/a.txt"}]  # content only in FULL
    assert basic["executors"] == body["executors"] and basic["creation_time"]
    full = client.get(f"{TES}/tasks/{task_id}?view=FULL", headers=ada).json
    assert full["inputs"] == [{"path": "/in/a.txt", "content": "hello\n"}]
    assert full["logs"][0]["logs"] == [] and full["logs"][0]["system_logs"] == []
    with app.app_context():
        analysis = db.session.get(Analysis, int(task_id))
        assert analysis.pipeline == "tes" and analysis.image == IMAGE
        # A task reading no project's files keeps its outputs in "TES tasks".
        assert analysis.project.name == "TES tasks"
    assert client.get(f"{TES}/tasks/{task_id}?view=ALL", headers=ada).status_code == 400


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"executors": []}, "executors", "should be non-empty"),
        ({"executors": [{"image": IMAGE}]}, "executors[0]", "'command' is a required"),
        (task(name=5), "name", "is not of type 'string'"),
        (
            {"executors": [{"image": "ubuntu:22.04", "command": ["true"]}]},
            "executors[0].image",
            "not among the images this server runs",
        ),
        (
            {
                "executors": [
                    {"image": IMAGE, "command": ["true"]},
                    {"image": "labqueue/python-base:bookworm-3", "command": ["true"]},
                ]
            },
            "executors[1].image",
            "must all use the same image",
        ),
        (
            task(inputs=[{"path": "/data/../etc/x", "content": "x"}]),
            "inputs[0].path",
            "must be a plain path",
        ),
        (
            task(inputs=[{"path": "/data/output/x", "content": "x"}]),
            "inputs[0].path",
            "may not be /, nor under",
        ),
        (
            task(inputs=[{"path": "/in/x", "url": "labqueue://projects/999/a"}]),
            "inputs[0].url",
            "you have no project 999",
        ),
        (task(inputs=[{"path": "/in/x"}]), "inputs[0].url", "give a url or inline"),
        (
            task(outputs=[{"url": "file:///data/output/x", "path": "/etc/x"}]),
            "outputs[0].path",
            "must lie under /data/output/",
        ),
        (
            task(outputs=[{"url": "file:///etc/x", "path": "/data/output/x"}]),
            "outputs[0].url",
            "this server writes no file anywhere else",
        ),
        (
            task(outputs=[{"url": "file:///data/x", "path": "/data/output/x"}]),
            "outputs[0].url",
            "stays where the task wrote it, under /data/output/",
        ),
        (
            task(
                resources={
                    "backend_parameters": {"VmSize": "big"},
                    "backend_parameters_strict": True,
                }
            ),
            "resources.backend_parameters",
            "supports no backend parameters",
        ),
        (
            {"executors": [{"image": IMAGE, "command": ["true"], "env": {"A-B": "1"}}]},
            "executors[0].env",
            "is not a variable name",
        ),
        # Below what the engine can start: refused now, not a SYSTEM_ERROR later.
        (task(resources={"ram_gb": 1e-9}), "resources.ram_gb", "less than the 6 MiB"),
        (
            task(inputs=[{"path": "/data", "content": "x"}]),
            "inputs[0].path",
            "may not be a folder above /data/output",
        ),
        (
            task(
                inputs=[{"path": "/in/x", "content": "x"}],
                volumes=["/in"],
            ),
            "volumes[0]",
            "overlaps /in/x",
        ),
    ],
)
def test_a_task_that_cannot_run_is_refused_per_field(
    app, client, ada, body, field, words
):
    reply = client.post(f"{TES}/tasks", json=body, headers=ada)
    assert reply.status_code == 400
    assert words in reply.json["errors"][field], reply.json
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(TesTask.analysis_id))) == 0
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_not_json_and_too_large_are_refused(client, ada, app):
    reply = client.post(f"{TES}/tasks", data="{", headers=ada)
    assert reply.status_code == 400 and "JSON object" in reply.json["message"]
    app.config["TES_MAX_CONTENT_BYTES"] = 10
    reply = client.post(
        f"{TES}/tasks",
        json=task(inputs=[{"path": "/in/a", "content": "x" * 600 * 1024}]),
        headers=ada,
    )
    assert reply.status_code == 413


def test_project_files_are_inputs_of_their_owner_only(
    app,
    client,
    ada,
    make_user,
    make_project,
    token_for,  # noqa: F811
):
    carol_id = make_user(email="carol@cs.ox.ac.uk")
    project = make_project(carol_id, name="Reads")
    carol = bearer(token_for("carol@cs.ox.ac.uk"))
    stored = client.put(
        f"/api/v1/projects/{project}/files?path=reads/r1.fq",
        data=b"@r\nACGT\n+\nIIII\n",
        headers=carol,
    )
    assert stored.status_code == 201
    url = f"labqueue://projects/{project}/reads/r1.fq"
    body = task(inputs=[{"path": "/in/r1.fq", "url": url}])
    task_id = create(client, carol, body)
    with app.app_context():
        assert db.session.get(Analysis, int(task_id)).project_id == project
    # A folder is a DIRECTORY input; asking for a file there is refused.
    folder = task(
        inputs=[
            {
                "path": "/in",
                "url": f"labqueue://projects/{project}/reads",
                "type": "FILE",
            }
        ]
    )
    reply = client.post(f"{TES}/tasks", json=folder, headers=carol)
    assert "is a folder, not a file" in reply.json["errors"]["inputs[0].type"]
    # Ada may not read Carol's project, whatever she knows of it.
    reply = client.post(f"{TES}/tasks", json=body, headers=ada)
    assert reply.status_code == 400
    assert f"you have no project {project}" in reply.json["errors"]["inputs[0].url"]


def test_outputs_go_to_projects_the_caller_may_write_to(
    app, client, ada, make_user, make_project
):
    carol = make_user(email="carol@cs.ox.ac.uk")
    shared = make_project(carol, name="Shared")
    with app.app_context():
        from frontend.core.models import ProjectShare, User

        mine = make_project(db.session.scalar(db.select(User.id).filter_by(email=ADA)))
        db.session.add(ProjectShare(project_id=shared, email=ADA, can_write=False))
        db.session.commit()

    def refused(url: str) -> str:
        body = task(outputs=[{"url": url, "path": "/data/output/x"}])
        reply = client.post(f"{TES}/tasks", json=body, headers=ada)
        assert reply.status_code == 400, reply.json
        return reply.json["errors"]["outputs[0].url"]

    assert refused("labqueue://projects/999/x") == "you have no project 999"
    assert "is shared with you read-only" in refused(f"labqueue://projects/{shared}/x")
    assert "name the file or folder" in refused(f"labqueue://projects/{mine}")
    assert "goes outside its folder" in refused(f"labqueue://projects/{mine}/a/../../x")
    # Shared read-write: accepted, and the task runs in that project.
    with app.app_context():
        share = db.session.scalar(db.select(ProjectShare).filter_by(email=ADA))
        share.can_write = True
        db.session.commit()
    url = f"labqueue://projects/{shared}/qc/x"
    body = task(outputs=[{"url": url, "path": "/data/output/x"}])
    task_id = create(client, ada, body)
    with app.app_context():
        assert db.session.get(TesTask, int(task_id)).system_problem is None


def test_urls_of_elsewhere_are_accepted_and_will_end_in_system_error(app, client, ada):
    task_id = create(
        client,
        ada,
        task(inputs=[{"url": "s3://bucket/a", "path": "/data/a"}]),
    )
    with app.app_context():
        problem = db.session.get(TesTask, int(task_id)).system_problem
    assert "s3://bucket/a" in problem and "fetches nothing" in problem


def test_outputs_kept_under_data_output_are_accepted(app, client, ada):
    # What workflow engines declare: the file the task writes, where it writes it.
    outputs = [
        {"url": "file:///data/output/lines.txt", "path": "/data/output/lines.txt"},
        {"url": "file:///data/output/plots", "path": "/data/output/plots"},
    ]
    task_id = create(client, ada, task(outputs=outputs))
    with app.app_context():
        assert db.session.get(TesTask, int(task_id)).system_problem is None


def test_states_map_from_the_analysis(app, client, ada):
    task_id = create(client, ada, task())
    cases = [
        ({"state": AnalysisState.RUNNING}, "INITIALIZING"),
        ({"handle": {"runner": "docker", "job_id": "x"}}, "RUNNING"),
        ({"cancel_requested": True}, "CANCELING"),
        ({"state": AnalysisState.SUCCEEDED}, "COMPLETE"),
        ({"state": AnalysisState.FAILED, "exit_code": 2}, "EXECUTOR_ERROR"),
        ({"exit_code": None}, "SYSTEM_ERROR"),
        # Its executors ended well, but its outputs could not be added.
        ({"exit_code": 0}, "SYSTEM_ERROR"),
        ({"state": AnalysisState.CANCELLED}, "CANCELED"),
    ]
    for values, state in cases:
        with app.app_context():
            analysis = db.session.get(Analysis, int(task_id))
            for key, value in values.items():
                setattr(analysis, key, value)
            db.session.commit()
        assert client.get(f"{TES}/tasks/{task_id}", headers=ada).json["state"] == state
        listed = client.get(f"{TES}/tasks?state={state}", headers=ada).json["tasks"]
        assert listed == [{"id": task_id, "state": state}]
    assert client.get(f"{TES}/tasks?state=DONE", headers=ada).status_code == 400


def test_tasks_are_listed_by_name_prefix_tags_and_pages(client, ada):
    ids = [
        create(client, ada, task(name="align-1", tags={"lab": "x", "n": "1"})),
        create(client, ada, task(name="align-2", tags={"lab": "x", "n": "2"})),
        create(client, ada, task(name="count_%", tags={"lab": "y"})),
    ]

    def names(query: str) -> list[str]:
        reply = client.get(f"{TES}/tasks?view=BASIC&{query}", headers=ada).json
        return [t["name"] for t in reply["tasks"]]

    assert names("name_prefix=align") == ["align-2", "align-1"]
    assert names("name_prefix=count_") == ["count_%"]
    assert names("name_prefix=count%25") == []  # a % is a character, not a wildcard
    assert names("tag_key=lab&tag_value=x") == ["align-2", "align-1"]
    assert names("tag_key=lab&tag_key=n&tag_value=x") == ["align-2", "align-1"]
    assert names("tag_key=n&tag_value=2") == ["align-2"]
    assert names("tag_key=missing") == []
    first = client.get(f"{TES}/tasks?page_size=2", headers=ada).json
    assert [t["id"] for t in first["tasks"]] == ids[:0:-1]
    second = client.get(
        f"{TES}/tasks?page_size=2&page_token={first['next_page_token']}", headers=ada
    ).json
    assert [t["id"] for t in second["tasks"]] == [ids[0]]
    assert "next_page_token" not in second
    assert client.get(f"{TES}/tasks?page_size=0", headers=ada).status_code == 400
    assert client.get(f"{TES}/tasks?page_token=abc", headers=ada).status_code == 400


def test_a_queued_task_is_cancelled(app, client, ada):
    task_id = create(client, ada, task())
    reply = client.post(f"{TES}/tasks/{task_id}:cancel", headers=ada)
    assert reply.status_code == 200 and reply.json == {}
    assert client.get(f"{TES}/tasks/{task_id}", headers=ada).json["state"] == "CANCELED"
    # Cancelling again is harmless; a finished task cannot be cancelled.
    assert client.post(f"{TES}/tasks/{task_id}:cancel", headers=ada).status_code == 200
    done = create(client, ada, task())
    with app.app_context():
        db.session.get(Analysis, int(done)).state = AnalysisState.SUCCEEDED
        db.session.commit()
    reply = client.post(f"{TES}/tasks/{done}:cancel", headers=ada)
    assert reply.status_code == 409 and "succeeded" in reply.json["message"]


def test_tokens_guard_the_tasks(app, client, ada, make_user, token_for):  # noqa: F811
    task_id = create(client, ada, task())
    assert client.get(f"{TES}/tasks").status_code == 401
    wrong = client.get(f"{TES}/tasks", headers=bearer("lq_wrong"))
    assert wrong.status_code == 401 and "not valid" in wrong.json["message"]
    # Some TES clients can only send HTTP Basic: the token is the password.
    token = ada["Authorization"].split()[1]
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    listed = client.get(f"{TES}/tasks", headers={"Authorization": f"Basic {basic}"})
    assert listed.status_code == 200 and listed.json["tasks"][0]["id"] == task_id
    make_user(email=BOB)
    reader = bearer(token_for(BOB, "--read-only"))
    assert client.post(f"{TES}/tasks", json=task(), headers=reader).status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/tasks/{id}"),
        ("get", "/tasks/{id}?view=FULL"),
        ("post", "/tasks/{id}:cancel"),
    ],
)
def test_someone_elses_task_is_404(
    app,
    client,
    ada,
    make_user,
    token_for,  # noqa: F811
    method,
    path,
):
    task_id = create(client, ada, task())
    make_user(email=BOB)
    bob = bearer(token_for(BOB))
    reply = getattr(client, method)(TES + path.format(id=task_id), headers=bob)
    assert reply.status_code == 404
    assert client.get(f"{TES}/tasks", headers=bob).json == {"tasks": []}
    assert client.get(f"{TES}/tasks/{task_id}", headers=ada).json["state"] == "QUEUED"


def test_a_task_that_cannot_start_ends_in_system_error_saying_why(app, client, ada):
    from frontend.worker.start import start

    app.config["RUNNER"] = "local"  # plain processes: no sandbox for a task
    elsewhere = create(
        client, ada, task(inputs=[{"url": "gs://bucket/a", "path": "/data/a"}])
    )
    local = create(client, ada, task())
    with app.app_context():
        assert start(int(elsewhere)) == "failed"
        assert start(int(local)) == "failed"
    for task_id, words in ((elsewhere, "gs://bucket/a"), (local, "only in containers")):
        full = client.get(f"{TES}/tasks/{task_id}?view=FULL", headers=ada).json
        assert full["state"] == "SYSTEM_ERROR"
        assert any(words in line for line in full["logs"][0]["system_logs"]), full
        log = client.get(f"/api/v1/analyses/{task_id}/log", headers=ada).json["text"]
        assert log.startswith("The task cannot run on this server:") and words in log
    with app.app_context():  # the client follows its tasks: no mail for each
        assert db.session.scalar(db.select(db.func.count(OutgoingMail.id))) == 0


def test_files_a_task_planted_in_its_folder_read_as_absent(app, client, ada, tmp_path):
    """The task's folder is the container's to write: a link there (to a host
    file) or a FIFO is never followed nor waited on by the FULL view."""
    from frontend.core.layout import task_dir

    secret = tmp_path / "secret.txt"
    secret.write_text("HOST-SECRET\n")
    task_id = create(client, ada, task(["echo", "one"], ["echo", "two"]))
    with app.app_context():
        folder = task_dir(db.session.get(Analysis, int(task_id)))
    folder.mkdir(parents=True)
    (folder / "1.exit").write_text("0\n")
    (folder / "1.out").symlink_to(secret)
    os.mkfifo(folder / "1.start")
    (folder / "1.err").write_text("its own words\n")
    (folder / "2.exit").symlink_to(secret)  # not a number it wrote itself
    full = client.get(f"{TES}/tasks/{task_id}?view=FULL", headers=ada)
    assert full.status_code == 200 and "HOST-SECRET" not in full.text
    logs = full.json["logs"][0]["logs"]
    assert len(logs) == 1, logs  # the second executor's end is not known
    assert logs[0]["stdout"] == "" and logs[0]["start_time"] is None
    assert logs[0]["stderr"] == "its own words\n" and logs[0]["exit_code"] == 0


def test_a_tasks_folder_is_emptied_and_made_by_handles(app, client, ada, tmp_path):
    """What an earlier attempt left (a link in place of ``volumes``, of an
    executor's file) is removed, never followed: nothing is made in, or handed
    over, through it."""
    from backend.runners import runner_class
    from frontend.core.layout import task_dir
    from frontend.tes.kind import TesTaskRun

    host = tmp_path / "host"
    host.mkdir()
    (host / "keep.txt").write_text("the host's\n")
    task_id = create(client, ada, task(volumes=["/work"]))
    with app.app_context():
        analysis = db.session.get(Analysis, int(task_id))
        folder = task_dir(analysis)
        folder.mkdir(parents=True)
        (folder / "volumes").symlink_to(host)
        (folder / "1.out").symlink_to(host / "keep.txt")
        plan = TesTaskRun().plan(analysis, runner_class("docker"), app.config)
        mounts = plan.mounts
        user = app.config["PIPELINE_USER"]
    assert sorted(p.name for p in host.iterdir()) == ["keep.txt"]
    assert (host / "keep.txt").read_text() == "the host's\n"
    assert not (folder / "1.out").exists() and not (folder / "1.out").is_symlink()
    volume = folder / "volumes" / "0"
    assert volume.is_dir() and not (folder / "volumes").is_symlink()
    assert [m.target for m in mounts] == ["/labqueue-tes", "/work"]
    if os.geteuid() == 0:  # a root worker hands the folders to the container
        assert f"{volume.stat().st_uid}:{volume.stat().st_gid}" == user
        assert host.stat().st_uid == 0
