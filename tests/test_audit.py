"""The audit trail: a row for each security and admin event, searchable by admins."""

from __future__ import annotations

import flask_migrate
import pytest
import sqlalchemy as sa

from frontend import create_app
from frontend.core.extensions import db
from frontend.core.models import AnalysisState, AuditEvent, Role, utcnow
from tests.conftest import PASSWORD, Auth, admin_action, csrf_token, make_analysis


def events(app) -> list[tuple[str, str | None, str, str]]:
    with app.app_context():
        rows = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        return [(e.action, e.actor_email, e.target, e.detail) for e in rows]


def test_admin_changes_are_in_the_audit_trail(
    client, make_user, make_project, app, runner
):
    ada = make_user(email="ada@cs.ox.ac.uk")
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    with app.app_context():
        db.session.add(Role(name="pipeline-author"))
        db.session.commit()
        role_id = db.session.scalar(
            sa.select(Role.id).filter_by(name="pipeline-author")
        )
    project = make_project(ada, name="Liver atlas")
    finished = make_analysis(
        app, project, state=AnalysisState.FAILED, finished_at=utcnow()
    )
    auth = Auth(client)
    auth.login("root@cs.ox.ac.uk")
    edit = f"/admin/admin_users/edit/?id={ada}"
    client.post(
        edit,
        data={
            "email": "ada@cs.ox.ac.uk",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "roles": [str(role_id)],
            "active": "y",
            "csrf_token": csrf_token(client.get(edit).text),
        },
    )
    for action in ("requeue", "remove"):
        admin_action(client, "admin_analyses", action, finished)
    token = csrf_token(client.get("/admin/admin_projects/").text)
    client.post(
        "/admin/admin_projects/delete/", data={"id": str(project), "csrf_token": token}
    )
    admin_action(client, "admin_users", "deactivate", ada)
    result = runner.invoke(args=["create-admin", "--email", "ada@cs.ox.ac.uk"])
    assert result.exit_code == 0, result.output
    root = "root@cs.ox.ac.uk"
    label = f"user {ada} <ada@cs.ox.ac.uk>"
    assert [e for e in events(app)] == [
        ("user.roles_changed", root, label, "added pipeline-author"),
        (
            "analysis.requeued",
            root,
            f"analysis {finished} of ada@cs.ox.ac.uk",
            f"queued again as analysis {finished + 1}",
        ),
        (
            "analysis.deleted",
            root,
            f"analysis {finished} (seq-qc) of ada@cs.ox.ac.uk",
            "",
        ),
        (
            "project.deleted",
            root,
            f"project {project} 'Liver atlas' of ada@cs.ox.ac.uk",
            "",
        ),
        ("user.deactivated", root, label, ""),
        ("user.roles_changed", None, label, "added admin (from the command line)"),
    ]
    # Admins search it.
    found = client.get("/admin/admin_audit/?search=deleted").text
    assert "project.deleted" in found and "analysis.deleted" in found
    assert "user.roles_changed" not in found


def test_password_changes_and_failed_logins_are_recorded(client, auth, make_user, app):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk", "a wrong password here")
    auth.login("ada@cs.ox.ac.uk")
    new = "another long passphrase"
    page = client.get("/change").text
    client.post(
        "/change",
        data={
            "password": PASSWORD,
            "new_password": new,
            "new_password_confirm": new,
            "csrf_token": csrf_token(page),
        },
    )
    trail = events(app)
    assert trail[0][:3] == ("login.failed", None, "ada@cs.ox.ac.uk")
    assert trail[1][:2] == ("password.changed", "ada@cs.ox.ac.uk")
    with app.app_context():
        ip = db.session.scalars(sa.select(AuditEvent.ip)).first()
    assert ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("proxies", "recorded"), [(0, "172.18.0.1"), (1, "203.0.113.9")]
)
def test_the_audit_sees_the_client_behind_as_many_proxies_as_configured(
    app_config, proxies, recorded
):
    # The app behind one proxy (nginx in front of Docker's published port): the
    # connection comes from the proxy, which names the client in X-Forwarded-For.
    # Without PROXY_COUNT the header is anyone's to write, so it is ignored.
    app = create_app({**app_config, "PROXY_COUNT": proxies})
    with app.app_context():
        flask_migrate.upgrade()
    client = app.test_client()
    client.environ_base.update(
        REMOTE_ADDR="172.18.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    Auth(client).login("nobody@cs.ox.ac.uk", "a wrong password here")
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent)).one()
    assert (event.action, event.ip) == ("login.failed", recorded)
