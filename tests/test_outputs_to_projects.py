"""Outputs that feed new runs: "Add to project" puts an analysis' outputs into a
project as files with their provenance, which run forms then offer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.layout import analysis_dir, disk_path
from frontend.core.models import Analysis, ProjectFile, ProjectShare, User
from tests.conftest import Auth, csrf_token, make_analysis


@pytest.fixture
def finished(app, make_user, make_project):
    """Ada's project with a finished table-profiler run that left three outputs."""
    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada, name="Counts")
    run = make_analysis(
        app,
        project,
        pipeline="table-profiler",
        pipeline_version="1.2.0",
        state="succeeded",
        params={"inputs": ["raw.csv"], "bins": 20},
    )
    with app.app_context():
        out = analysis_dir(db.session.get(Analysis, run)) / "output"
    (out / "plots").mkdir(parents=True)
    (out / "summary.csv").write_text("column,mean\nx,1.5\n")
    (out / "plots" / "x.png").write_bytes(b"\x89PNG picture")
    (out / "notes.txt").write_text("notes")
    return {"ada": ada, "project": project, "run": run, "out": out}


def add(client, run: int, **data):
    page = client.get(f"/analyses/{run}").text
    return client.post(
        f"/analyses/{run}/add-to-project",
        data={"csrf_token": csrf_token(page), **data},
    )


def rows(app, project: int) -> dict[str, ProjectFile]:
    with app.app_context():
        found = db.session.scalars(sa.select(ProjectFile).filter_by(project_id=project))
        return {row.path: row for row in found}


def test_chosen_outputs_become_files_with_their_provenance(app, client, finished):
    Auth(client).login("ada@cs.ox.ac.uk")
    project, run = finished["project"], finished["run"]
    done = add(
        client, run, project=project, folder="qc", paths="summary.csv", selected="1"
    )
    assert done.status_code == 302 and f"/projects/{project}?folder=" in done.location
    added = rows(app, project)["qc/summary.csv"]
    assert added.size == 18 and added.provenance["analysis"] == run
    assert added.provenance["params"] == {"inputs": ["raw.csv"], "bins": 20}
    with app.app_context():
        stored = disk_path(db.session.get(ProjectFile, added.id))
    # The same bytes, and on this filesystem the same blocks: a hard link.
    assert stored.read_text() == "column,mean\nx,1.5\n"
    assert stored.stat().st_ino == (finished["out"] / "summary.csv").stat().st_ino
    page = client.get(f"/projects/{project}/entries/{added.id}").text
    assert "Made by analysis" in page and f'href="/analyses/{run}"' in page
    assert "table-profiler 1.2.0" in page and "bins=20" in page
    # A run form offers it like any file.
    form = client.get(f"/projects/{project}/run/table-profiler").text
    assert "qc/summary.csv" in form


def test_all_outputs_keep_their_folders_and_names_clash_as_asked(app, client, finished):
    Auth(client).login("ada@cs.ox.ac.uk")
    project, run = finished["project"], finished["run"]
    add(client, run, project=project, folder="from-run", everything="1")
    assert {"from-run/summary.csv", "from-run/plots/x.png", "from-run/notes.txt"} <= (
        set(rows(app, project))
    )
    add(
        client, run, project=project, folder="from-run", on_clash="keep", everything="1"
    )
    assert "from-run/summary (1).csv" in rows(app, project)
    said = add(
        client, run, project=project, folder="from-run", on_clash="skip", everything="1"
    )
    page = client.get(said.location).text
    assert "0 output(s) of" in page and "3 skipped" in page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"paths": "../../../etc/passwd", "selected": "1"}, "is not an output of"),
        (
            {"paths": "summary.csv", "folder": "../up", "selected": "1"},
            "goes outside its folder",
        ),
        ({"selected": "1"}, "Choose the outputs to add"),
    ],
)
def test_bad_requests_say_why_and_add_nothing(app, client, finished, data, message):
    Auth(client).login("ada@cs.ox.ac.uk")
    project = finished["project"]
    said = add(client, finished["run"], project=project, **data)
    page = client.get(said.location).text
    assert "Nothing was added" in page and message in page
    assert rows(app, project) == {}


def test_outputs_must_fit_the_target_owners_storage(app, client, finished):
    with app.app_context():
        db.session.get(User, finished["ada"]).storage_quota = 10
        db.session.commit()
    Auth(client).login("ada@cs.ox.ac.uk")
    said = add(client, finished["run"], project=finished["project"], everything="1")
    page = client.get(said.location).text
    assert "Nothing was added" in page and "storage" in page
    assert rows(app, finished["project"]) == {}


def test_a_read_only_member_adds_into_their_own_project_not_the_shared_one(
    app, client, finished, make_user, make_project
):
    rita = make_user(email="rita@cs.ox.ac.uk")
    own = make_project(rita, name="Rita's")
    with app.app_context():
        db.session.add(
            ProjectShare(project_id=finished["project"], email="rita@cs.ox.ac.uk")
        )
        db.session.commit()
    Auth(client).login("rita@cs.ox.ac.uk")
    page = client.get(f"/analyses/{finished['run']}").text
    assert f'<option value="{own}"' in page
    assert f'<option value="{finished["project"]}"' not in page  # read-only
    refused = add(client, finished["run"], project=finished["project"], everything="1")
    assert refused.status_code == 302  # the form refuses a project it does not offer
    assert rows(app, finished["project"]) == {}
    add(client, finished["run"], project=own, folder="from-ada", everything="1")
    assert "from-ada/summary.csv" in rows(app, own)


def test_a_file_keeps_its_provenance_after_its_analysis_is_deleted(
    app, client, finished
):
    Auth(client).login("ada@cs.ox.ac.uk")
    project, run = finished["project"], finished["run"]
    add(client, run, project=project, folder="qc", paths="notes.txt", selected="1")
    page = client.get(f"/analyses/{run}").text
    client.post(f"/analyses/{run}/delete", data={"csrf_token": csrf_token(page)})
    added = rows(app, project)["qc/notes.txt"]
    page = client.get(f"/projects/{project}/entries/{added.id}").text
    assert f"#{run}" in page and f'href="/analyses/{run}"' not in page
    download = client.get(f"/projects/{project}/entries/{added.id}/download")
    assert download.get_data() == b"notes"
    download.close()


def test_two_outputs_that_would_take_one_name_are_refused(app, client, finished):
    Auth(client).login("ada@cs.ox.ac.uk")
    project, run = finished["project"], finished["run"]
    add(client, run, project=project, folder="qc", paths="summary.csv", selected="1")
    (finished["out"] / "summary (1).csv").write_text("another")
    said = add(
        client, run, project=project, folder="qc", on_clash="keep", everything="1"
    )
    page = client.get(said.location).text
    assert "Nothing was added" in page and "would be written twice" in page
    assert set(rows(app, project)) == {"qc", "qc/summary.csv"}


def _token(runner, email: str) -> dict:
    made = runner.invoke(args=["tokens", "create", "--email", email, "--name", "t"])
    assert made.exit_code == 0, made.output
    return {"Authorization": f"Bearer {made.output.strip()}"}


def test_the_api_adds_outputs_as_the_web_does(
    app, client, runner, finished, make_user, make_project
):
    ada = _token(runner, "ada@cs.ox.ac.uk")
    project, run = finished["project"], finished["run"]
    url = f"/api/v1/analyses/{run}/add-to-project"
    reply = client.post(
        url,
        json={"project_id": project, "folder": "qc", "paths": ["summary.csv"]},
        headers=ada,
    )
    assert reply.status_code == 200, reply.json
    assert reply.json == {
        "project_id": project,
        "folder": "qc",
        "results": [
            {
                "path": "qc/summary.csv",
                "status": "stored",
                "message": "Stored qc/summary.csv (18 B).",
            }
        ],
    }
    assert rows(app, project)["qc/summary.csv"].provenance["analysis"] == run
    # Again: the name exists, and "skip" leaves it.
    again = client.post(
        url,
        json={
            "project_id": project,
            "folder": "qc",
            "paths": ["summary.csv"],
            "on_clash": "skip",
        },
        headers=ada,
    )
    assert again.json["results"][0]["status"] == "skipped"
    unknown = client.post(
        url, json={"project_id": project, "paths": ["nope.csv"]}, headers=ada
    )
    assert unknown.status_code == 422
    assert "“nope.csv” is not an output" in unknown.json["message"]

    # A read-only member may read the run, but not add into the shared project;
    # an outsider sees neither.
    rita = make_user(email="rita@cs.ox.ac.uk")
    own = make_project(rita, name="Rita's")
    with app.app_context():
        db.session.add(ProjectShare(project_id=project, email="rita@cs.ox.ac.uk"))
        db.session.commit()
    reader = _token(runner, "rita@cs.ox.ac.uk")
    refused = client.post(url, json={"project_id": project}, headers=reader)
    assert refused.status_code == 403
    into_own = client.post(url, json={"project_id": own}, headers=reader)
    assert into_own.status_code == 200, into_own.json
    assert len(into_own.json["results"]) == 3
    make_user(email="olga@cs.ox.ac.uk")
    outsider = _token(runner, "olga@cs.ox.ac.uk")
    assert client.post(url, json={"project_id": own}, headers=outsider).status_code == (
        404
    )
    assert client.post(url, json={"project_id": project}).status_code == 401
