"""Analyses without a worker: run forms, refusals, the queue, admin actions,
recovery of runs whose worker died."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from markupsafe import escape

from frontend.core import launch, outbox
from frontend.core.extensions import db
from frontend.core.kinds import kind_of
from frontend.core.layout import analysis_dir
from frontend.core.models import (
    Analysis,
    AnalysisState,
    PipelineImage,
    PipelineSetting,
    utcnow,
)
from frontend.worker import recovery, start
from tests.conftest import Auth, admin_action, csrf_token, make_analysis, upload

DATA = Path(__file__).parent / "data"


@pytest.fixture
def project(app, client, make_user, make_project):
    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="Data")
    Auth(client).login("ada@cs.ox.ac.uk")
    upload(client, project, "expression.csv", (DATA / "expression.csv").read_bytes())
    upload(client, project, "notes/readme.txt", b"not a table")
    return project


def post_run(client, project, pipeline, **fields):
    url = f"/projects/{project}/run/{pipeline}"
    token = csrf_token(client.get(url).text)
    data = {f"p_{key}": value for key, value in fields.items()}
    return client.post(url, data={**data, "csrf_token": token})


def errors(html: str) -> list[str]:
    return re.findall(r'invalid-feedback d-block">([^<]+)', html)


def test_pipelines_are_offered_with_their_description(client, project):
    page = client.get(f"/projects/{project}/run").text
    assert "Table profiler" in page and "Sequence QC" in page
    assert "Per-column summary statistics" in page


def test_run_form_is_generated_from_the_schema(client, project):
    page = client.get(f"/projects/{project}/run/table-profiler").text
    assert '<option value="expression.csv">' in page
    assert "notes/readme.txt" not in page  # not a *.csv or *.tsv
    assert 'name="p_bins"' in page and 'min="5"' in page and 'max="200"' in page
    assert 'value="30"' in page  # the default
    assert "Number of bars in each histogram." in page  # help text


def test_run_form_explains_the_pipeline_from_its_readme(client, project):
    page = client.get(f"/projects/{project}/run/seq-qc").text
    assert 'id="pipeline-readme"' in page
    assert "<h4>Outputs</h4>" in page  # the README's ## heading, below the page's
    assert "<code>n50</code>: the length L such that sequences" in page
    assert 'href="https://bioinf.shenwei.me/seqkit/" rel="noopener' in page


def test_a_readme_cannot_run_script_in_the_page(client, app, project, tmp_path):
    import shutil

    from backend.manifest import PIPELINES_DIR

    root = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR / "seq-qc", root / "seq-qc")
    (root / "seq-qc" / "README.md").write_text(
        "# Hostile\n\n<script>alert('readme')</script>\n\n"
        "[click](javascript:alert(1)) <img src=x onerror=alert(2)>\n"
        '<a href="http://x" onclick="alert(3)">x</a>\n'
    )
    app.config["PIPELINES_DIR"] = str(root)
    page = client.get(f"/projects/{project}/run/seq-qc").text
    readme = page[page.index('id="pipeline-readme"') :]
    assert "<h3>Hostile</h3>" in readme
    for hostile in ("<script>alert", "javascript:", "onerror", "onclick", "<img"):
        assert hostile not in readme, hostile


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tables": "expression.csv", "bins": "500"}, "must be at most 200"),
        ({"tables": "expression.csv", "bins": "two"}, "Not a valid integer value"),
        ({"bins": "20"}, "is required"),
        ({"tables": "missing.csv"}, "not a valid choice"),
        ({"tables": "../../2/3/files/secret.csv"}, "not a valid choice"),
        ({"tables": "; rm -rf /"}, "not a valid choice"),
    ],
)
def test_bad_parameters_are_refused_at_the_form(client, app, project, fields, message):
    response = post_run(client, project, "table-profiler", max_rows="0", **fields)
    assert response.status_code == 200
    assert any(message in error for error in errors(response.text)), errors(
        response.text
    )
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_submission_queues_and_records_the_parameters(client, app, project):
    response = post_run(
        client,
        project,
        "table-profiler",
        tables="expression.csv",
        bins="12",
        max_rows="0",
    )
    analysis_id = int(response.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        analysis = db.session.get(Analysis, analysis_id)
        assert analysis.state == AnalysisState.QUEUED
        assert analysis.params == {
            "tables": ["expression.csv"],
            "bins": 12,
            "max_rows": 0,
        }
        saved = json.loads((analysis_dir(analysis) / "params.json").read_text())
    assert saved["bins"] == 12
    page = client.get(f"/analyses/{analysis_id}").text
    assert "position 1 in the queue" in page
    status = client.get(f"/analyses/{analysis_id}/status").json
    assert (status["state"], status["position"], status["finished"]) == (
        "queued",
        1,
        False,
    )


def test_cancel_a_queued_analysis(client, app, project):
    response = post_run(
        client,
        project,
        "table-profiler",
        tables="expression.csv",
        bins="12",
        max_rows="0",
    )
    analysis_id = int(response.headers["Location"].rsplit("/", 1)[1])
    token = csrf_token(client.get(f"/analyses/{analysis_id}").text)
    client.post(f"/analyses/{analysis_id}/cancel", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Analysis, analysis_id).state == AnalysisState.CANCELLED
        # A start, delivered later, finds nothing to do.
        assert start.start(analysis_id) == "nothing to do"
    again = client.post(
        f"/analyses/{analysis_id}/cancel",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "already cancelled" in again.text


def test_a_disabled_pipeline_is_not_offered(client, app, project):
    with app.app_context():
        db.session.add(PipelineSetting(name="seq-qc", enabled=False))
        db.session.commit()
    assert "Sequence QC" not in client.get(f"/projects/{project}/run").text
    assert client.get(f"/projects/{project}/run/seq-qc").status_code == 404


def test_reconciler_requeues_then_gives_up_on_runs_of_lost_hosts(app, project, smtp):
    from frontend.core.models import WatcherLease

    stale = utcnow() - timedelta(minutes=5)
    gone = {"runner": "docker", "job_id": "0" * 64, "host": "gone", "work_dir": ""}
    retry, lost, fresh, starting, stuck = (
        make_analysis(
            app,
            project,
            state=AnalysisState.RUNNING,
            started_at=started,
            worker=host,
            handle=handle,
            attempt=attempt,
        )
        for host, handle, attempt, started in (
            ("gone-host", gone, 1, stale),
            ("gone-host", gone, 2, stale),
            ("live-host", gone, 1, stale),
            ("gone-host", None, 1, utcnow()),  # just claimed: its start goes on
            ("gone-host", None, 1, stale),  # claimed long ago, never launched
        )
    )
    with app.app_context():
        db.session.add(WatcherLease(host="live-host", token="t", pid=1))
        db.session.commit()
        report = recovery.reconcile()
        states = {a.id: a for a in db.session.scalars(db.select(Analysis))}
        assert sorted(report["requeued"]) == [retry, stuck]
        assert report["lost"] == [lost]
        assert states[retry].state == AnalysisState.QUEUED
        assert states[retry].handle is None and states[retry].dispatched_at is None
        assert states[lost].state == AnalysisState.FAILED
        assert "Worker lost" in states[lost].error_summary
        assert states[fresh].state == states[starting].state == AnalysisState.RUNNING
        outbox.flush()
    snapshot = Path(app.config["FAILED_ANALYSES_DIR"]) / str(lost)
    error = json.loads((snapshot / "error.json").read_text())
    assert error["reason"].startswith("worker lost")
    smtp.wait_for("ada@cs.ox.ac.uk", "seq-qc on Data failed")


def test_a_host_judges_only_the_runs_of_the_runners_it_serves(app, project):
    """A Docker host cannot see a cluster job: it must neither requeue nor fail the
    Slurm runs of a lost login node (the job may still run), nor its unlaunched
    ones; a host serving Slurm decides about them."""
    stale = utcnow() - timedelta(minutes=5)
    job = {"runner": "slurm", "job_id": "999999", "host": "login", "work_dir": ""}
    launched, unlaunched = (
        make_analysis(
            app,
            project,
            state=AnalysisState.RUNNING,
            started_at=stale,
            worker="login",
            runner="slurm",
            handle=handle,
        )
        for handle in (job, None)
    )
    with app.app_context():
        app.config["WORKER_RUNNERS"] = ["docker"]
        assert recovery.recover_lost_hosts(lambda name: None) == {
            "adopted": [],
            "requeued": [],
            "lost": [],
        }
        report = recovery.reconcile()
        assert report["requeued"] == report["lost"] == report["adopted"] == []
        rows = [db.session.get(Analysis, i) for i in (launched, unlaunched)]
        assert [row.state for row in rows] == [AnalysisState.RUNNING] * 2
        assert [row.worker for row in rows] == ["login", "login"]
        # A host serving Slurm whose cluster no longer knows the job queues it
        # again, with a reason.
        app.config["WORKER_RUNNERS"] = ["slurm"]
        report = recovery.recover_lost_hosts(lambda name: None)
        assert report["requeued"] == [launched]
        again = db.session.get(Analysis, launched)
        db.session.refresh(again)
        assert again.state == AnalysisState.QUEUED
        assert again.progress_message == "waiting again: its worker host was lost"


def test_no_email_when_the_user_turned_them_off(app, project, smtp):
    analysis_id = make_analysis(app, project, state=AnalysisState.SUCCEEDED)
    with app.app_context():
        analysis = db.session.get(Analysis, analysis_id)
        analysis.owner.notify_by_email = False
        db.session.commit()
        assert kind_of(analysis).end_mail(analysis) is None
        db.session.commit()
        outbox.flush()
    assert smtp.sent_to("ada@cs.ox.ac.uk") == []


def test_outputs_are_served_only_from_the_listing(client, app, project):
    analysis_id = make_analysis(app, project, state=AnalysisState.SUCCEEDED)
    with app.app_context():
        folder = analysis_dir(db.session.get(Analysis, analysis_id)) / "output"
    folder.mkdir(parents=True)
    (folder / "plot.svg").write_text("<svg onload='alert(1)'/>")
    (folder / "link").symlink_to("/etc/passwd")
    # Inline (for an <img>), an SVG is only ever sent under a CSP sandbox.
    svg = client.get(f"/analyses/{analysis_id}/outputs/plot.svg?inline=1")
    assert svg.mimetype == "image/svg+xml"
    assert "sandbox" in svg.headers["Content-Security-Policy"]
    assert "script-src" not in svg.headers["Content-Security-Policy"]
    assert svg.headers["X-Content-Type-Options"] == "nosniff"
    svg.close()
    download = client.get(f"/analyses/{analysis_id}/outputs/plot.svg")
    assert download.headers["Content-Disposition"].startswith("attachment")
    download.close()
    assert client.get(f"/analyses/{analysis_id}/outputs/link").status_code == 404
    traversal = client.get(f"/analyses/{analysis_id}/outputs/../log.txt")
    assert traversal.status_code == 404


def test_admin_sees_failures_and_can_queue_again(client, app, project, make_user):
    failed = make_analysis(
        app,
        project,
        state=AnalysisState.FAILED,
        error_summary="The pipeline exited with code 2.",
        finished_at=utcnow(),
        runner="slurm",
        worker="login-node-1",
        handle={"runner": "slurm", "job_id": "40711"},
    )
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    auth = Auth(client)
    auth.logout()
    auth.login("root@cs.ox.ac.uk")
    page = client.get("/admin/admin_analyses/")
    assert "The pipeline exited with code 2." in page.text
    # Where it ran: the runner, the host and the cluster's job id.
    assert "login-node-1" in page.text and "40711" in page.text and "slurm" in page.text
    admin_action(client, "admin_analyses", "requeue", failed)
    with app.app_context():
        # A new analysis runs; the failed one keeps its outcome.
        earlier = db.session.get(Analysis, failed)
        again = db.session.scalar(db.select(Analysis).filter_by(retry_of_id=failed))
        assert earlier.state == AnalysisState.FAILED
        assert earlier.error_summary == "The pipeline exited with code 2."
        assert again.state == AnalysisState.QUEUED and again.params == earlier.params
    page = client.get(f"/analyses/{failed}").text
    assert f'href="/analyses/{again.id}"' in page and "(this one)" in page


def test_queue_shows_how_long_runs_have_been_going(client, app, project):
    make_analysis(
        app,
        project,
        state=AnalysisState.RUNNING,
        progress_percent=40,
        progress_message="aligning",
        started_at=utcnow() - timedelta(seconds=125),
    )
    page = client.get("/analyses/").text
    # 125 s when the row was made; a slow machine may take a second or two more.
    assert re.search(r"running for 2 min [5-9] s", page), page
    assert "aligning" in page and "40%" in page


def test_a_worker_failure_fails_the_run_and_mails_the_admins(
    tmp_path, smtp, monkeypatch
):
    import flask_migrate

    from frontend import create_app
    from frontend.logs import remove_handlers
    from tests.conftest import base_config

    app = create_app({**base_config(tmp_path, smtp), "LOG_TO_FILE": True})

    class BrokenRunner:
        name = "broken"
        containers = True

        def __init__(self, name=None):
            pass

        def image_problem(self, image, max_age=0):
            return None

        def close(self):
            pass

        def launch(self, spec):
            raise RuntimeError("the engine vanished")

    monkeypatch.setattr(start, "make_runner", BrokenRunner)
    monkeypatch.setattr(launch, "build_spec", lambda *args: None)
    try:
        with app.app_context():
            flask_migrate.upgrade()
            from flask_security import hash_password

            from frontend.core.security import security
            from frontend.projects.services import create_project

            user = security.datastore.create_user(
                email="ada@cs.ox.ac.uk",
                password=hash_password("x" * 12),
                confirmed_at=utcnow(),
            )
            project = create_project(user, "Data")
            analysis = Analysis(
                owner=user,
                project=project,
                pipeline="seq-qc",
                pipeline_version="1.0.0",
                image="i",
                params={},
            )
            db.session.add(analysis)
            db.session.commit()
            analysis_id = analysis.id
            assert start.start(analysis_id) == "failed"
            summary = db.session.get(Analysis, analysis_id).error_summary
            outbox.flush()
    finally:
        remove_handlers()
    # The researcher reads plain words; the admins get the exception.
    assert summary == (
        "The run could not be carried out because of a problem on the server; the "
        "administrators have been told."
    )
    alert = smtp.wait_for("admins@example.org", "Labqueue error")
    assert "the engine vanished" in alert.get_content()
    snapshot = Path(app.config["FAILED_ANALYSES_DIR"]) / str(analysis_id)
    assert "the engine vanished" in (snapshot / "error.json").read_text()
    smtp.wait_for("ada@cs.ox.ac.uk", "seq-qc on Data failed")


def test_the_log_is_read_from_an_offset(client, app, project):
    analysis_id = make_analysis(
        app, project, state=AnalysisState.RUNNING, started_at=utcnow()
    )
    with app.app_context():
        log = analysis_dir(db.session.get(Analysis, analysis_id)) / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("first line\n")
    first = client.get(f"/analyses/{analysis_id}/status?offset=0").json
    assert first["log"] == "first line\n" and first["offset"] == 11
    with log.open("a") as handle:
        handle.write("second line\n")
    second = client.get(f"/analyses/{analysis_id}/status?offset={first['offset']}").json
    assert second["log"] == "second line\n" and second["offset"] == 23
    assert client.get(f"/analyses/{analysis_id}/status?offset=23").json["log"] == ""


def test_history_filters_paginates_and_deletes(client, app, project):
    ids = [
        make_analysis(app, project, state=AnalysisState.SUCCEEDED, finished_at=utcnow())
        for _ in range(55)
    ]
    make_analysis(app, project, state=AnalysisState.FAILED, finished_at=utcnow())
    first = client.get("/analyses/history").text
    assert "56 analyses · page 1 of 2" in first
    failed = client.get("/analyses/history?state=failed").text
    assert "1 analyses · page 1 of 1" in failed
    with app.app_context():
        folder = analysis_dir(db.session.get(Analysis, ids[0]))
    folder.mkdir(parents=True, exist_ok=True)
    token = csrf_token(first)
    client.post(f"/analyses/{ids[0]}/delete", data={"csrf_token": token})
    assert not folder.exists()
    assert client.get(f"/analyses/{ids[0]}").status_code == 404


def test_history_page_costs_a_fixed_number_of_queries(client, app, project):
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def queries_for_history() -> int:
        event.listen(engine, "before_cursor_execute", count)
        try:
            statements.clear()
            assert client.get("/analyses/history").status_code == 200
            return len(statements)
        finally:
            event.remove(engine, "before_cursor_execute", count)

    for _ in range(3):
        make_analysis(app, project, state=AnalysisState.SUCCEEDED, finished_at=utcnow())
    few = queries_for_history()
    for _ in range(40):
        make_analysis(app, project, state=AnalysisState.SUCCEEDED, finished_at=utcnow())
    many = queries_for_history()
    # 3 rows or 43: the same queries, none per row.
    assert few == many, (few, many)


def test_run_again_prefills_the_form(client, app, project):
    response = post_run(
        client,
        project,
        "table-profiler",
        tables="expression.csv",
        bins="17",
        max_rows="0",
    )
    analysis_id = int(response.headers["Location"].rsplit("/", 1)[1])
    page = client.get(
        f"/projects/{project}/run/table-profiler?again={analysis_id}"
    ).text
    assert 'value="17"' in page
    assert '<option selected value="expression.csv">' in page


def record_image(app, pipeline: str, image: str, problem: str | None, runner="docker"):
    """What a worker's image check writes (execution.note_image)."""
    with app.app_context():
        db.session.merge(
            PipelineImage(
                pipeline=pipeline,
                image=image,
                ready=problem is None,
                problem=problem,
                runner=runner,
                host="worker-1",
                checked_at=utcnow(),
            )
        )
        db.session.commit()


MISSING = "the image labqueue/seq-qc:2.1.0 is not on this host's Docker engine"


def test_a_pipeline_whose_image_is_missing_is_unavailable(client, app, project):
    record_image(app, "seq-qc", "labqueue/seq-qc:2.1.0", MISSING)
    choose = client.get(f"/projects/{project}/run").text
    card = choose.split('data-pipeline="seq-qc"')[1].split("data-pipeline=")[0]
    assert "Unavailable" in card and "Set up a run" not in card
    assert "is not on this host" not in choose  # the engine's story is for admins
    other = choose.split('data-pipeline="table-profiler"')[1]
    assert "Set up a run" in other and "Unavailable" not in other
    form = client.get(f"/projects/{project}/run/seq-qc").text
    assert "Sequence QC cannot run at the moment" in form
    assert re.search(r'<input[^>]*disabled[^>]*value="Start the analysis"', form)


def test_a_direct_post_for_an_unavailable_pipeline_is_refused(client, app, project):
    upload(client, project, "reads.fastq.gz", (DATA / "reads.fastq.gz").read_bytes())
    record_image(app, "seq-qc", "labqueue/seq-qc:2.1.0", MISSING)
    response = post_run(client, project, "seq-qc", sequences="reads.fastq.gz")
    assert response.status_code == 503
    assert "cannot run at the moment" in response.text
    assert "Nothing was submitted." in response.text
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_admins_see_why_a_pipeline_is_unavailable(
    client, app, project, make_user, make_project
):
    admin = make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    theirs = make_project(admin, name="Admin's")
    record_image(app, "seq-qc", "labqueue/seq-qc:2.1.0", MISSING)
    Auth(client).logout()
    Auth(client).login("root@cs.ox.ac.uk")
    shown = str(escape(MISSING))
    assert shown in client.get(f"/projects/{theirs}/run").text
    assert shown in client.get(f"/projects/{theirs}/run/seq-qc").text


def test_a_check_of_another_version_does_not_count(client, app, project):
    record_image(app, "seq-qc", "labqueue/seq-qc:0.9.0", MISSING)
    page = client.get(f"/projects/{project}/run/seq-qc").text
    assert "cannot run at the moment" not in page


def test_every_page_warns_when_runs_are_not_sandboxed(client, app, project):
    assert "without a sandbox" not in client.get("/projects/").text
    record_image(app, "seq-qc", "labqueue/seq-qc:2.1.0", None, runner="local")
    for url in ("/projects/", f"/projects/{project}", "/analyses/", "/"):
        assert "without a sandbox" in client.get(url).text, url


def test_the_mail_subject_is_one_line_whatever_the_project_was_named(
    app, project, smtp
):
    from frontend.core.models import Project

    with app.app_context():
        # A name from before names were checked.
        db.session.get(Project, project).name = "two\nlines"
        analysis = Analysis(
            owner_id=db.session.get(Project, project).owner_id,
            project_id=project,
            pipeline="seq-qc",
            pipeline_version="1.0.0",
            image="i",
            params={},
            state=AnalysisState.SUCCEEDED,
        )
        db.session.add(analysis)
        db.session.commit()
        kind_of(analysis).end_mail(analysis)
        db.session.commit()
        outbox.flush()
    mail = smtp.wait_for("ada@cs.ox.ac.uk", "seq-qc on two lines finished")
    assert "\n" not in mail["Subject"]


def labelled_pipeline(root):
    """The sleeper with a free-text parameter (no maxLength in its schema)."""
    import shutil

    from tests.conftest import TEST_PIPELINES

    folder = root / "labeller"
    shutil.copytree(TEST_PIPELINES / "sleeper", folder)
    manifest = folder / "manifest.toml"
    manifest.write_text(
        manifest.read_text()
        .replace('name = "sleeper"', 'name = "labeller"')
        .replace("exit {exit_code}", "echo {label}; exit {exit_code}")
    )
    schema = folder / "parameters.schema.json"
    schema.write_text(
        schema.read_text().replace(
            '"properties": {',
            '"properties": {\n    "label": {"type": "string", "default": "run"},',
        )
    )
    return root


def test_an_overlong_text_parameter_is_refused_on_its_field(
    client, app, project, tmp_path
):
    app.config["PIPELINES_DIR"] = str(labelled_pipeline(tmp_path / "pipelines"))
    form = client.get(f"/projects/{project}/run/labeller").text
    assert 'name="p_label"' in form and 'maxlength="10000"' in form
    long = "x" * 1024**2  # a MiB: under the body limit, over the parameter cap
    response = post_run(client, project, "labeller", label=long, seconds="0")
    assert response.status_code == 200
    assert f"is too long: {len(long):,} characters, and at most 10,000" in " ".join(
        errors(response.text)
    )
    assert len(response.text) < 200_000  # the value is not sent back whole
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0
    accepted = post_run(client, project, "labeller", label="batch 7", seconds="0")
    assert accepted.status_code == 302


def test_a_run_queued_again_goes_to_its_pipelines_runner_now(
    client, app, project, make_user
):
    """Queue again is a new run like any other: it goes to the runner its pipeline
    is set to now (here Slurm, though the first ran on Docker), with its
    parameters written beside it."""
    from frontend.core.layout import analysis_dir
    from frontend.core.models import PipelineSetting

    failed = make_analysis(
        app,
        project,
        state=AnalysisState.FAILED,
        finished_at=utcnow(),
        runner="docker",
        params={"min_length": 3},
    )
    with app.app_context():
        db.session.add(PipelineSetting(name="seq-qc", runner="slurm"))
        db.session.commit()
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    Auth(client).logout()
    Auth(client).login("root@cs.ox.ac.uk")
    admin_action(client, "admin_analyses", "requeue", failed)
    with app.app_context():
        again = db.session.scalar(db.select(Analysis).filter_by(retry_of_id=failed))
        assert again.runner == "slurm"
        written = analysis_dir(again) / "params.json"
        assert json.loads(written.read_text()) == {"min_length": 3}
