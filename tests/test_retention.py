"""The retention policy, with the clock moved forward (``flask purge --as-of``):
warnings first, by mail; then exactly what the policy says goes, each deletion
logged; what was kept, used or never warned about stays; --dry-run changes
nothing."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.layout import analysis_dir, output_dir
from frontend.core.models import (
    Analysis,
    AuditEvent,
    OutgoingMail,
    Project,
    RetentionNotice,
    User,
    utcnow,
)
from tests.conftest import Auth, csrf_token, make_analysis

POLICY = {
    "RETENTION_OUTPUT_DAYS": 30,
    "RETENTION_PROJECT_DAYS": 90,
    "RETENTION_USER_DAYS": 365,
    "RETENTION_WARNING_DAYS": 7,
    "RETENTION_FAILED_SNAPSHOT_DAYS": 60,
}


def ago(days: float):
    return utcnow() - timedelta(days=days)


def with_outputs(app, analysis: int) -> None:
    with app.app_context():
        folder = output_dir(db.session.get(Analysis, analysis))
    folder.mkdir(parents=True)
    (folder / "result.csv").write_text("a,b\n1,2\n")
    (folder.parent / "log.txt").write_text("the log")


@pytest.fixture
def site(app, make_user, make_project, tmp_path):
    """Ada uses the site; her old outputs, one pinned, one fresh; a project she
    left; Bob gone for a year; an admin gone as long; two failed-run snapshots."""
    app.config.update(POLICY)
    ada = make_user(email="ada@cs.ox.ac.uk")
    bob = make_user(email="bob@cs.ox.ac.uk", first_name="Bob")
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    used = make_project(ada, name="Active")
    left = make_project(ada, name="Left alone")
    bobs = make_project(bob, name="Bob's")
    ids = {"ada": ada, "bob": bob, "used": used, "left": left, "bobs": bobs}
    for name, days, keep in (
        ("old", 40, False),
        ("pinned", 40, True),
        ("fresh", 5, False),
    ):
        ids[name] = make_analysis(
            app, used, state="succeeded", finished_at=ago(days), keep=keep
        )
        with_outputs(app, ids[name])
    ids["later_kept"] = make_analysis(app, used, state="succeeded", finished_at=ago(40))
    with_outputs(app, ids["later_kept"])
    with app.app_context():
        db.session.get(Project, left).updated_at = ago(100)
        db.session.get(Project, used).updated_at = ago(100)  # but runs are recent
        db.session.get(Project, bobs).updated_at = ago(400)
        for user in db.session.scalars(sa.select(User)):
            user.last_seen_at = ago(2) if user.id == ada else ago(400)
        db.session.commit()
    snapshots = tmp_path / "failedAnalyses"
    for name, days in (("901", 70), ("902", 10)):
        (snapshots / name).mkdir(parents=True)
        (snapshots / name / "error.json").write_text("{}")
        stamp = time.time() - days * 86400
        os.utime(snapshots / name, (stamp, stamp))
    ids["snapshots"] = snapshots
    return ids


def purge(runner, days_from_now: float, *extra: str) -> str:
    when = (utcnow() + timedelta(days=days_from_now)).strftime("%Y-%m-%dT%H:%M")
    result = runner.invoke(args=["purge", "--as-of", when, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def state(app, ids) -> dict:
    with app.app_context():
        analyses = {
            name: db.session.get(Analysis, ids[name])
            for name in ("old", "pinned", "fresh", "later_kept")
        }
        return {
            "outputs": {
                name: output_dir(a).exists() and any(output_dir(a).iterdir())
                for name, a in analyses.items()
            },
            "projects": sorted(p.name for p in db.session.scalars(sa.select(Project))),
            "users": sorted(u.email for u in db.session.scalars(sa.select(User))),
            "snapshots": sorted(p.name for p in ids["snapshots"].iterdir()),
            "notices": db.session.scalar(sa.select(sa.func.count(RetentionNotice.id))),
        }


def test_warnings_first_then_exactly_what_the_policy_says(
    app, runner, smtp, site, caplog
):
    before = state(app, site)
    dry = purge(runner, 0, "--dry-run")
    assert "would be warned: ada@cs.ox.ac.uk: the outputs of analysis" in dry
    assert state(app, site) == before  # nothing written, sent or removed
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OutgoingMail.id))) == 0

    said = purge(runner, 0)
    mail = smtp.wait_for("ada@cs.ox.ac.uk", "will delete some of your data on")
    text = mail.get_content()
    assert f"the outputs of analysis #{site['old']}" in text
    assert "the project “Left alone”" in text and "Keep" in text
    assert f"#{site['pinned']}" not in text and f"#{site['fresh']}" not in text
    smtp.wait_for("bob@cs.ox.ac.uk", "will delete some of your data")
    assert "root@cs.ox.ac.uk" not in said  # an admin's account is never deleted
    now = state(app, site)
    assert now["snapshots"] == ["902"]  # the old snapshot goes without a warning
    assert now["outputs"] == before["outputs"] and now["users"] == before["users"]

    # Before the warning time has passed, nothing goes.
    assert "deleted:" not in purge(runner, 3)
    # Ada keeps one of the warned analyses meanwhile.
    client = app.test_client()
    Auth(client).login("ada@cs.ox.ac.uk")
    page = client.get(f"/analyses/{site['later_kept']}").text
    assert "will be removed on" in page
    client.post(
        f"/analyses/{site['later_kept']}/keep",
        data={"keep": "1", "csrf_token": csrf_token(page)},
    )

    with caplog.at_level(logging.WARNING, logger="frontend.retention"):
        said = purge(runner, 8)
    after = state(app, site)
    assert after["outputs"] == {
        "old": False,
        "pinned": True,
        "fresh": True,
        "later_kept": True,
    }
    assert after["projects"] == ["Active"]  # Left alone and Bob's went
    assert after["users"] == ["ada@cs.ox.ac.uk", "root@cs.ox.ac.uk"]
    assert after["notices"] == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"the outputs of analysis #{site['old']}" in logged
    assert "the project “Left alone”" in logged and "bob@cs.ox.ac.uk" in logged
    with app.app_context():
        audited = db.session.scalars(
            sa.select(AuditEvent.target).filter_by(action="retention.deleted")
        ).all()
        assert len(audited) == 4  # outputs, two projects (one Bob's), Bob
        old = db.session.get(Analysis, site["old"])
        assert old.outputs_removed_at is not None
        assert (analysis_dir(old) / "log.txt").exists()  # the log stays
    page = client.get(f"/analyses/{site['old']}").text
    assert "Its outputs were removed on" in page


def test_nothing_goes_whose_warning_was_not_sent(app, runner, site):
    purge(runner, 0)
    with app.app_context():
        # The mail server refused every warning so far.
        db.session.execute(sa.update(OutgoingMail).values(sent_at=None))
        db.session.commit()
    said = purge(runner, 8)
    assert "deleted:" not in said and "waiting for its warning's time" in said
    assert state(app, site)["projects"] == ["Active", "Bob's", "Left alone"]


def test_using_a_project_or_signing_in_withdraws_the_warning(app, runner, smtp, site):
    purge(runner, 0)
    smtp.wait_for("bob@cs.ox.ac.uk", "will delete some of your data")
    smtp.wait_for("ada@cs.ox.ac.uk", "will delete some of your data")
    client = app.test_client()
    Auth(client).login("bob@cs.ox.ac.uk")  # Bob comes back
    page = client.get(f"/projects/{site['bobs']}").text
    assert "will be deleted on" in page
    client.post(f"/projects/{site['bobs']}/keep", data={"csrf_token": csrf_token(page)})
    assert "will be deleted on" not in client.get(f"/projects/{site['bobs']}").text
    said = purge(runner, 8)
    # The project's warning went when it was kept; his account's goes now.
    assert "1 warning(s) dropped" in said
    after = state(app, site)
    assert "Bob's" in after["projects"] and "bob@cs.ox.ac.uk" in after["users"]
    assert "Left alone" not in after["projects"]


def test_no_policy_no_purge(app, runner, site):
    app.config.update({key: 0 for key in POLICY if key != "RETENTION_WARNING_DAYS"})
    result = runner.invoke(args=["purge"])
    assert "No retention policy is set" in result.output
    assert state(app, site)["snapshots"] == ["901", "902"]


def test_the_profile_says_the_policy_and_what_is_due(app, runner, site):
    purge(runner, 0)
    client = app.test_client()
    Auth(client).login("ada@cs.ox.ac.uk")
    page = client.get("/account/profile").text
    assert "Outputs of analyses that ended 30 days ago" in page
    assert "Projects with no upload, change or run for 90 days" in page
    assert f"the outputs of analysis #{site['old']}</a>" in page
