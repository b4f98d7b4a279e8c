"""Batches: one analysis per file from one run form, followed, cancelled and
downloaded together; the per-user limit still decides how many start."""

from __future__ import annotations

import io
import zipfile

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.layout import analysis_dir
from frontend.core.models import Analysis, Batch
from tests.conftest import Auth, csrf_token, upload

TABLES = ["data/a.csv", "data/b.csv", "data/c.csv", "other/d.csv"]


@pytest.fixture
def project(app, client, make_user, make_project):
    """Ada's project with four tables and a text file, Ada signed in."""
    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada, name="Tables")
    Auth(client).login("ada@cs.ox.ac.uk")
    for path in TABLES:
        upload(client, project, path, b"x,y\n1,2\n")
    upload(client, project, "data/readme.txt", b"notes")
    return project


def run(client, project: int, **fields):
    url = f"/projects/{project}/run/table-profiler"
    page = client.get(url).text
    return client.post(url, data={"csrf_token": csrf_token(page), **fields})


def analyses(app) -> list[Analysis]:
    with app.app_context():
        found = db.session.scalars(sa.select(Analysis).order_by(Analysis.id)).all()
        db.session.expunge_all()
        return found


def test_one_analysis_per_selected_file(app, client, project):
    chosen = ["data/a.csv", "data/c.csv"]
    made = run(client, project, p_tables=chosen, p_bins="12", batch="each")
    assert made.status_code == 302 and "/batches/" in made.location
    runs = analyses(app)
    assert [r.params["tables"] for r in runs] == [["data/a.csv"], ["data/c.csv"]]
    assert {r.params["bins"] for r in runs} == {12}
    assert len({r.batch_id for r in runs}) == 1 and runs[0].batch_id is not None
    page = client.get(made.location).text
    assert "data/a.csv" in page and "data/c.csv" in page and "2 queued" in page
    detail = client.get(f"/analyses/{runs[0].id}").text
    assert f"One of batch #{runs[0].batch_id}" in detail


def test_one_analysis_per_file_matching_a_pattern(app, client, project):
    made = run(client, project, batch="matching", batch_pattern="data/*")
    assert made.status_code == 302, made.text
    # The text file matches the pattern but is no table: it is left out.
    inputs = [r.params["tables"] for r in analyses(app)]
    assert inputs == [["data/a.csv"], ["data/b.csv"], ["data/c.csv"]]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch": "each"}, "Choose the files: one analysis each."),
        ({"batch": "matching", "batch_pattern": "*.fastq"}, "No file of the project"),
        ({"batch": "matching"}, "Give a pattern"),
        (
            {"batch": "each", "p_tables": TABLES, "p_bins": "1"},
            "must be at least 5",
        ),
    ],
)
def test_a_batch_that_cannot_run_says_why_and_queues_nothing(
    app, client, project, fields, message
):
    answer = run(client, project, **fields)
    assert answer.status_code == 200 and message in answer.text
    assert analyses(app) == []


def test_a_batch_has_a_size_limit(app, client, project):
    app.config["BATCH_MAX_RUNS"] = 3
    answer = run(client, project, batch="matching", batch_pattern="*.csv")
    assert "A batch runs at most 3 analyses and 4 files were chosen" in answer.text
    assert analyses(app) == []


def test_the_per_user_limit_decides_how_many_are_sent(app, client, project):
    run(client, project, batch="matching", batch_pattern="*.csv")
    runs = analyses(app)
    assert len(runs) == 4
    # Dispatched at submission: as many as MAX_RUNNING_PER_USER (2) allows.
    assert sum(r.dispatched_at is not None for r in runs) == 2


def test_cancelling_a_batch_cancels_what_has_not_ended(app, client, project):
    made = run(client, project, batch="matching", batch_pattern="data/*.csv")
    batch = made.location.rsplit("/", 1)[1]
    page = client.get(made.location).text
    client.post(f"/batches/{batch}/cancel", data={"csrf_token": csrf_token(page)})
    assert {r.state.value for r in analyses(app)} == {"cancelled"}
    status = client.get(f"/batches/{batch}/status").json
    assert status["finished"] is True and status["counts"]["cancelled"] == 3
    page = client.get(made.location).text
    again = client.post(
        f"/batches/{batch}/cancel", data={"csrf_token": csrf_token(page)}
    )
    assert "has already ended" in client.get(again.location).text


def test_the_outputs_of_a_batch_come_as_one_zip(app, client, project):
    made = run(client, project, p_tables=["data/a.csv", "other/d.csv"], batch="each")
    for analysis in analyses(app):
        with app.app_context():
            folder = analysis_dir(db.session.get(Analysis, analysis.id)) / "output"
        folder.mkdir(parents=True)
        (folder / "summary.csv").write_text(f"summary of {analysis.id}")
    batch = made.location.rsplit("/", 1)[1]
    reply = client.get(f"/batches/{batch}/outputs.zip")
    first, second = (a.id for a in analyses(app))
    with zipfile.ZipFile(io.BytesIO(reply.get_data())) as archive:
        assert sorted(archive.namelist()) == [
            f"{first}-a.csv/summary.csv",
            f"{second}-d.csv/summary.csv",
        ]
        assert (
            archive.read(f"{second}-d.csv/summary.csv")
            == f"summary of {second}".encode()
        )
    reply.close()
    with app.app_context():
        assert db.session.get(Batch, int(batch)).pipeline == "table-profiler"
