"""The admin home (workers, queues, runs per day, durations, failures, storage,
mail) and Admin -> Pipelines (every installed pipeline, on or off in one click).
Speed with 10,000 analyses is measured by `make bench` (bench.dashboard); here,
that the dashboard's queries do not grow in number with the analyses."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from frontend.core.extensions import db
from frontend.core.models import (
    Analysis,
    AnalysisState,
    AuditEvent,
    OutgoingMail,
    PipelineSetting,
    User,
    WatcherLease,
    utcnow,
)
from tests.conftest import Auth, csrf_token


@pytest.fixture
def admin_client(client, make_user):
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    Auth(client).login("root@cs.ox.ac.uk")
    return client


def add_runs(app, project: int, owner: int, rows: list[dict]) -> None:
    """Insert analyses in one statement (thousands in a second)."""
    base = {
        "owner_id": owner,
        "project_id": project,
        "pipeline_version": "1",
        "image": "x",
        "params": {},
        "attempt": 1,
        "progress_percent": 0.0,
        "progress_message": "",
        "output_bytes": 0,
        "log_offset": 0,
        "cancel_requested": False,
        "keep": False,
    }
    with app.app_context():
        db.session.execute(sa.insert(Analysis), [{**base, **row} for row in rows])
        db.session.commit()


def section(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}".*?</(table|p|figure)>', page, re.DOTALL)
    assert found, f"no #{element_id}"
    return found[0]


@pytest.fixture
def site(app, make_user, make_project):
    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada)
    now = utcnow()
    seq_seconds = [30, 45, 60, 75, 90, 120, 600]
    rows = [
        {
            "pipeline": "seq-qc",
            "state": AnalysisState.SUCCEEDED,
            "submitted_at": now - timedelta(days=2),
            "started_at": now - timedelta(days=2),
            "finished_at": now - timedelta(days=2) + timedelta(seconds=s),
            "runner": "docker",
        }
        for s in seq_seconds
    ]
    rows += [
        {
            "pipeline": "table-profiler",
            "state": AnalysisState.FAILED,
            "error_summary": reason,
            "submitted_at": now - timedelta(days=1),
            "started_at": now - timedelta(days=1),
            "finished_at": now - timedelta(days=1),
            "runner": "docker",
        }
        for reason in ["It ran out of memory.", "It ran out of memory.", "Exit 3."]
    ]
    rows += [
        {"pipeline": "seq-qc", "state": state, "submitted_at": now, "runner": runner}
        for state, runner in [
            (AnalysisState.QUEUED, "slurm"),
            (AnalysisState.QUEUED, "slurm"),
            (AnalysisState.RUNNING, "docker"),
        ]
    ]
    add_runs(app, project, ada, rows)
    with app.app_context():
        db.session.add_all(
            [
                WatcherLease(
                    host="node-a", token="a", pid=1, renewed_at=now, runners=["docker"]
                ),
                WatcherLease(
                    host="login-1",
                    token="b",
                    pid=2,
                    renewed_at=now - timedelta(hours=1),
                    runners=["slurm"],
                ),
                OutgoingMail(
                    recipient="x@y.org", subject="s", body="b", last_error="refused"
                ),
            ]
        )
        db.session.commit()
    return {"seq_seconds": seq_seconds}


def test_the_admin_home_shows_the_system(admin_client, site):
    page = admin_client.get("/admin/").text
    workers = section(page, "workers")
    assert re.search(r"node-a</td>\s*<td>docker</td>.*?alive", workers, re.DOTALL)
    assert re.search(r"login-1</td>\s*<td>slurm</td>.*?silent", workers, re.DOTALL)
    queues = section(page, "queues")
    assert re.search(r"slurm</td>.*?>2</td>\s*<td[^>]*>0</td>", queues, re.DOTALL)
    assert re.search(r"docker</td>.*?>0</td>\s*<td[^>]*>1</td>", queues, re.DOTALL)
    chart = section(page, "runs-per-day")
    assert "<svg" in chart and "seq-qc" in chart and "table-profiler" in chart
    failures = section(page, "failures")
    assert re.search(r"It ran out of memory.</td>\s*<td[^>]*>2</td>", failures)
    assert "1 mail(s) not sent yet" in page and "1 refused at least once" in page


def test_durations_are_the_percentiles_numpy_gives(admin_client, app, site):
    from backend.runners import format_duration

    seconds = np.array(site["seq_seconds"], dtype=float)
    p50, p95 = np.percentile(seconds, 50), np.percentile(seconds, 95)
    table = section(admin_client.get("/admin/").text, "durations")
    row = re.search(r"seq-qc</td>(.*?)</tr>", table, re.DOTALL)[1]
    cells = re.findall(r">([^<]+)</td>", row)
    assert cells == ["7", format_duration(p50), format_duration(p95)]


def test_the_dashboards_queries_do_not_grow_with_the_analyses(
    admin_client, app, make_user, make_project
):
    ada = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(ada)
    now = utcnow()

    def runs(count: int) -> list[dict]:
        return [
            {
                "pipeline": ("seq-qc", "table-profiler")[n % 2],
                "state": (AnalysisState.SUCCEEDED, AnalysisState.FAILED)[n % 3 == 0],
                "error_summary": f"Reason {n % 5}.",
                "submitted_at": now - timedelta(hours=n % 700),
                "started_at": now - timedelta(hours=n % 700),
                "finished_at": now - timedelta(hours=n % 700) + timedelta(seconds=n),
                "runner": "docker",
            }
            for n in range(count)
        ]

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def queries() -> int:
        event.listen(engine, "before_cursor_execute", count)
        try:
            statements.clear()
            assert admin_client.get("/admin/").status_code == 200
            return len(statements)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    add_runs(app, project, ada, runs(10))
    queries()  # the first of the day also notes the admin as seen today
    few = queries()
    add_runs(app, project, ada, runs(9_990))
    many = queries()
    assert few == many, (few, many)


def test_every_installed_pipeline_is_listed_and_switched_in_one_click(
    admin_client, app, make_project
):
    with app.app_context():
        root = db.session.scalar(sa.select(User.id).filter_by(email="root@cs.ox.ac.uk"))
    project = make_project(root)
    assert "/run/seq-qc" in admin_client.get(f"/projects/{project}/run").text
    listed = admin_client.get("/admin/admin_pipelines/").text
    for name, tag in (("seq-qc", "labqueue/seq-qc:"), ("table-profiler", "labqueue/")):
        row = re.search(rf'data-pipeline="{name}".*?</tr>', listed, re.DOTALL)[0]
        assert tag in row and ">on</span>" in row
    admin_client.post(
        "/admin/admin_pipelines/switch/",
        data={"name": "seq-qc", "enabled": "0", "csrf_token": csrf_token(listed)},
    )
    with app.app_context():
        assert db.session.get(PipelineSetting, "seq-qc").enabled is False
        assert (
            db.session.scalar(
                sa.select(AuditEvent.target).filter_by(action="pipeline.disabled")
            )
            == "seq-qc"
        )
    listed = admin_client.get("/admin/admin_pipelines/").text
    row = re.search(r'data-pipeline="seq-qc".*?</tr>', listed, re.DOTALL)[0]
    assert ">off</span>" in row and "Turn on" in row
    # No longer offered on a project's "Run a pipeline" page.
    assert "/run/seq-qc" not in admin_client.get(f"/projects/{project}/run").text
    reply = admin_client.post(
        "/admin/admin_pipelines/switch/",
        data={"name": "nothing", "enabled": "1", "csrf_token": csrf_token(listed)},
    )
    assert reply.status_code == 404
