"""Small things a newcomer hit, walking through the site: where a login lands,
what the log and the lists show, what a mail's subject says."""

from __future__ import annotations

from datetime import timedelta

import pytest

from frontend.core.extensions import db
from frontend.core.layout import log_path
from frontend.core.models import Analysis, utcnow
from tests.conftest import Auth, make_analysis

LOG = (
    "reading plate1.csv\n"
    "##progress 10 reading\n"
    "300 rows\n"
    "  ##progress 60 plotting\n"
    "done\n"
)


@pytest.fixture
def ada(app, client, make_user, make_project):
    user = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(user, name="Plates")
    Auth(client).login("ada@cs.ox.ac.uk")
    return {"user": user, "project": project}


def with_log(app, analysis: int, text: str) -> None:
    with app.app_context():
        path = log_path(db.session.get(Analysis, analysis))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_login_lands_on_the_projects(client, make_user):
    make_user(email="ada@cs.ox.ac.uk")
    answer = Auth(client).login("ada@cs.ox.ac.uk")
    assert answer.headers["Location"].endswith("/projects/")


def test_the_log_people_read_leaves_progress_lines_to_the_bar(app, client, ada):
    run = make_analysis(app, ada["project"], state="running", started_at=utcnow())
    with_log(app, run, LOG + "half a li")
    live = client.get(f"/analyses/{run}/status").json
    assert live["log"] == "reading plate1.csv\n300 rows\ndone\n"  # whole lines only
    with app.app_context():
        finished = db.session.get(Analysis, run)
        finished.state, finished.finished_at = "succeeded", utcnow()
        db.session.commit()
    rest = client.get(f"/analyses/{run}/status?offset={live['offset']}").json
    assert rest["log"] == "half a li"  # the run ended: its last line as it is
    page = client.get(f"/analyses/{run}").text
    assert "300 rows" in page and "##progress" not in page
    full = client.get(f"/analyses/{run}/log")
    assert "##progress 60 plotting" in full.get_data(as_text=True)  # all of it
    full.close()


def test_a_running_analysis_shows_when_it_started(app, client, ada):
    queued = make_analysis(app, ada["project"])
    assert client.get(f"/analyses/{queued}/status").json["started"] is None
    with app.app_context():
        row = db.session.get(Analysis, queued)
        row.state, row.started_at = "running", utcnow()
        db.session.commit()
    started = client.get(f"/analyses/{queued}/status").json["started"]
    assert started.startswith("Started ") and "in the queue" in started
    assert started in client.get(f"/analyses/{queued}").text


def test_history_and_queue_rows_show_inputs_and_duration(app, client, ada):
    files = [f"plates/p{n}.csv" for n in range(5)]
    start = utcnow()
    make_analysis(
        app,
        ada["project"],
        pipeline="table-profiler",
        params={"tables": files, "bins": 30},
        state="succeeded",
        started_at=start,
        finished_at=start + timedelta(seconds=95),
    )
    said = "plates/p0.csv, plates/p1.csv, plates/p2.csv and 2 more"
    for page in ("/analyses/history", "/analyses/"):
        text = client.get(page).text
        assert said in text and "1 min 35 s" in text, page


def test_a_finished_runs_mail_names_it(app, client, smtp, ada):
    from frontend.core.endings import finalize

    run = make_analysis(app, ada["project"], state="running", started_at=utcnow())
    with app.app_context():
        finalize(db.session.get(Analysis, run), None, exit_code=0)
    smtp.wait_for("ada@cs.ox.ac.uk", f"#{run} seq-qc on Plates finished")
