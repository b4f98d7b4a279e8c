"""The dispatcher: fair order (first in, first out per user, round robin across
users), the per-user and site-wide limits, and resending what was lost; on SQLite
and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from frontend.core.extensions import db
from frontend.core.models import Analysis, AnalysisState, utcnow
from frontend.core.queue import dispatch
from tests.conftest import Auth

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


class Sent:
    """Stands for the broker: records the tasks the dispatcher sends."""

    def __init__(self):
        self.starts: list[int] = []
        self.down = False

    def send_task(self, name, args=None, **options):
        if self.down:
            raise ConnectionRefusedError("the broker is away")
        if name == "labqueue.start":
            self.starts.append(args[0])


@pytest.fixture
def broker(app, monkeypatch):
    sent = Sent()
    monkeypatch.setitem(app.extensions, "celery", sent)
    return sent


@pytest.fixture
def users(app, make_user, make_project):
    """Three users with a project each; returns {name: (user id, project id)}."""
    found = {}
    for name in ("ada", "bea", "cy"):
        user = make_user(email=f"{name}@cs.ox.ac.uk")
        found[name] = (user, make_project(user, name=f"{name}'s"))
    return found


def queue(app, users, *names, minutes_ago: int = 10) -> list[int]:
    """Queue an analysis for each name, one second apart, in that order."""
    ids = []
    with app.app_context():
        start = utcnow() - timedelta(minutes=minutes_ago)
        for n, name in enumerate(names):
            user, project = users[name]
            analysis = Analysis(
                owner_id=user,
                project_id=project,
                pipeline="seq-qc",
                pipeline_version="1.0.0",
                image="i",
                params={},
                state=AnalysisState.QUEUED,
                submitted_at=start + timedelta(seconds=n),
            )
            db.session.add(analysis)
            db.session.commit()
            ids.append(analysis.id)
    return ids


@BOTH
def test_the_queue_is_served_round_robin_across_users(app, users, broker):
    app.config.update(MAX_RUNNING=0, MAX_RUNNING_PER_USER=0)
    a1, a2, a3, b1, b2, c1 = queue(app, users, "ada", "ada", "ada", "bea", "bea", "cy")
    with app.app_context():
        assert dispatch() == [a1, b1, c1, a2, b2, a3]
    assert broker.starts == [a1, b1, c1, a2, b2, a3]


@BOTH
def test_limits_hold_and_what_is_sent_counts_until_it_starts(app, users, broker):
    app.config.update(MAX_RUNNING=3, MAX_RUNNING_PER_USER=2)
    a1, a2, a3, b1, b2, c1 = queue(app, users, "ada", "ada", "ada", "bea", "bea", "cy")
    with app.app_context():
        assert dispatch() == [a1, b1, c1]  # the site holds three
        assert dispatch() == []  # those three are on their way
        db.session.get(Analysis, c1).state = AnalysisState.SUCCEEDED
        db.session.commit()
        assert dispatch() == [a2]  # Ada has one of her two going
        db.session.get(Analysis, a1).state = AnalysisState.RUNNING
        db.session.get(Analysis, b1).state = AnalysisState.SUCCEEDED
        db.session.commit()
        # Ada is at her limit (a1 running, a2 sent): Bea's turn.
        assert dispatch() == [b2]


@BOTH
def test_a_lost_start_is_sent_again_and_a_down_broker_changes_nothing(
    app, users, broker
):
    app.config.update(REDISPATCH_SECONDS=30)
    (only,) = queue(app, users, "ada")
    with app.app_context():
        broker.down = True
        assert dispatch() == []
        assert db.session.get(Analysis, only).dispatched_at is None  # still due
        broker.down = False
        assert dispatch() == [only]
        assert dispatch() == []  # sent, on its way
        db.session.get(Analysis, only).dispatched_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
        assert dispatch() == [only]  # its message was lost: again


@BOTH
def test_the_queue_page_shows_the_fair_order(app, users, broker, client):
    a1, a2, b1 = queue(app, users, "ada", "ada", "bea")
    Auth(client).login("ada@cs.ox.ac.uk")
    # Bea's first comes before Ada's second, though submitted after it.
    assert "position 3 in the queue" in client.get(f"/analyses/{a2}").text
    assert "position 1 in the queue" in client.get(f"/analyses/{a1}").text
    page = " ".join(client.get("/analyses/").text.split())
    assert page.index(f"#{a1}") < page.index(f"#{a2}")


def submit_sleeper(app, client, project) -> int:
    from tests.conftest import TEST_PIPELINES, csrf_token

    app.config["PIPELINES_DIR"] = str(TEST_PIPELINES)
    url = f"/projects/{project}/run/sleeper"
    token = csrf_token(client.get(url).text)
    reply = client.post(
        url, data={"p_seconds": "0", "p_exit_code": "0", "csrf_token": token}
    )
    assert reply.status_code == 302, reply.text
    return int(reply.headers["Location"].rsplit("/", 1)[1])


@BOTH
def test_a_submission_with_nobody_waiting_is_sent_at_once(app, users, broker, client):
    Auth(client).login("ada@cs.ox.ac.uk")
    first = submit_sleeper(app, client, users["ada"][1])
    assert broker.starts == [first]
    with app.app_context():
        assert db.session.get(Analysis, first).dispatched_at is not None
        assert dispatch() == []  # on its way: not sent twice


@BOTH
def test_a_submission_behind_others_waits_its_turn(app, users, broker, client):
    app.config.update(MAX_RUNNING=1, MAX_RUNNING_PER_USER=0)
    (waiting,) = queue(app, users, "bea")  # due, never sent
    Auth(client).login("ada@cs.ox.ac.uk")
    mine = submit_sleeper(app, client, users["ada"][1])
    assert broker.starts == [waiting]  # the one slot goes to who came first
    with app.app_context():
        assert db.session.get(Analysis, mine).dispatched_at is None  # still due


@BOTH
def test_a_submission_while_the_broker_is_away_stays_due(app, users, broker, client):
    Auth(client).login("ada@cs.ox.ac.uk")
    broker.down = True
    mine = submit_sleeper(app, client, users["ada"][1])
    with app.app_context():
        assert db.session.get(Analysis, mine).dispatched_at is None
    broker.down = False
    with app.app_context():
        assert dispatch() == [mine]
