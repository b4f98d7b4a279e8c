"""Groups, project shares and share links, as their users meet them: the pages,
the mail (a real SMTP server), what a member may do, whose storage it takes."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.models import (
    Analysis,
    AuditEvent,
    GroupMember,
    ProjectFile,
    ProjectShare,
    User,
)
from frontend.core.storage import storage_used
from tests.conftest import Auth, csrf_token, make_analysis, upload


@pytest.fixture
def lab(app, make_user, make_project):
    """Ada (a PI) with a project holding a file; Rita, Will and Bob have accounts."""
    ids = {"ada": make_user(email="ada@cs.ox.ac.uk")}
    for name in ("rita", "will", "bob"):
        ids[name] = make_user(email=f"{name}@cs.ox.ac.uk", first_name=name.title())
    ids["project"] = make_project(ids["ada"], name="RNA-seq")
    return ids


def post(client, url: str, page: str, **data):
    """Submit a form of ``page`` (its CSRF token) to ``url``."""
    return client.post(url, data={"csrf_token": csrf_token(page), **data})


def as_user(client, email: str) -> Auth:
    """Sign ``client`` in as ``email``, whoever it was before."""
    with client.session_transaction() as session:
        session.clear()
    auth = Auth(client)
    auth.login(email)
    return auth


def signed_out(client) -> None:
    with client.session_transaction() as session:
        session.clear()


def make_group(client, name: str = "Ada's lab") -> int:
    page = client.get("/groups/").text
    made = post(client, "/groups/new", page, name=name)
    return int(made.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def invite(client, group: int, email: str):
    page = client.get(f"/groups/{group}").text
    return post(client, f"/groups/{group}/invite", page, email=email)


def share(client, project: int, **data):
    page = client.get(f"/projects/{project}/sharing").text
    return post(client, f"/projects/{project}/sharing", page, **data)


def test_members_are_invited_by_mail_and_join_by_accepting(app, client, smtp, lab):
    as_user(client, "ada@cs.ox.ac.uk")
    group = make_group(client)
    invite(client, group, "Rita@cs.ox.ac.uk")
    mail = smtp.wait_for("rita@cs.ox.ac.uk", "invites you to the group Ada's lab")
    assert "/groups/\r\n" in mail.get_content()  # where to accept
    as_user(client, "rita@cs.ox.ac.uk")
    waiting = client.get("/shared/").text
    assert "invites you to" in waiting and "Ada&#39;s lab" in waiting
    post(client, f"/groups/{group}/accept", waiting)
    page = client.get(f"/groups/{group}").text
    assert "rita@cs.ox.ac.uk" in page and "invited</span>" not in page
    assert "invites you to" not in client.get("/shared/").text


def test_an_address_without_an_account_is_invited_the_same_way(
    app, client, smtp, lab, make_user
):
    as_user(client, "ada@cs.ox.ac.uk")
    group = make_group(client)
    said = invite(client, group, "newcomer@cs.ox.ac.uk")
    assert said.status_code == 302
    smtp.wait_for("newcomer@cs.ox.ac.uk", "invites you to the group")
    make_user(email="newcomer@cs.ox.ac.uk")  # registers later
    as_user(client, "newcomer@cs.ox.ac.uk")
    assert "Ada&#39;s lab" in client.get("/groups/").text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not an address"}, "is not an email address"),
        ({"email": "ada@cs.ox.ac.uk"}, "The project is yours already"),
        ({}, "Choose a group or give an address"),
    ],
)
def test_a_bad_share_is_refused_with_a_reason_and_stores_nothing(
    app, client, lab, data, message
):
    as_user(client, "ada@cs.ox.ac.uk")
    answer = share(client, lab["project"], access="read", **data)
    page = client.get(answer.headers["Location"]).text
    assert message in page.replace("&#39;", "'")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ProjectShare.id))) == 0


def test_a_read_only_member_looks_and_downloads_but_changes_nothing(app, client, lab):
    as_user(client, "ada@cs.ox.ac.uk")
    upload(client, lab["project"], "reads/a.csv", b"x,y\n1,2\n")
    group = make_group(client)
    invite(client, group, "rita@cs.ox.ac.uk")
    share(client, lab["project"], group=str(group), access="read")
    run = make_analysis(app, lab["project"], pipeline="table-profiler")
    as_user(client, "rita@cs.ox.ac.uk")
    post(client, f"/groups/{group}/accept", client.get("/groups/").text)
    page = client.get(f"/projects/{lab['project']}").text
    assert "shared with you, read-only" in page and "reads" in page
    assert 'id="uploader"' not in page and "Run a pipeline" not in page
    refused = upload(client, lab["project"], "mine.txt", b"mine")
    assert refused.status_code == 403 and "read-only" in refused.json["message"]
    history = client.get(f"/analyses/history?project={lab['project']}").text
    assert f"#{run} table-profiler" in history and "Ada Lovelace" in history
    with app.app_context():
        paths = db.session.scalars(sa.select(ProjectFile.path)).all()
    assert sorted(paths) == ["reads", "reads/a.csv"]


def test_a_read_write_member_uploads_and_runs_on_the_owners_storage(app, client, lab):
    as_user(client, "ada@cs.ox.ac.uk")
    share(client, lab["project"], email="will@cs.ox.ac.uk", access="write")
    as_user(client, "will@cs.ox.ac.uk")
    stored = upload(client, lab["project"], "counts.csv", b"a,b\n1,2\n3,4\n")
    assert stored.status_code == 200, stored.text
    with app.app_context():
        ada, will = db.session.get(User, lab["ada"]), db.session.get(User, lab["will"])
        assert (storage_used(ada), storage_used(will)) == (12, 0)
    form = client.get(f"/projects/{lab['project']}/run/table-profiler").text
    assert "Nothing was submitted" not in form
    # Who ran it and the project's owner may cancel it; another member may not.
    run = make_analysis(app, lab["project"], owner_id=lab["will"])
    page = client.get(f"/analyses/{run}").text
    assert f'action="/analyses/{run}/cancel"' in page
    as_user(client, "ada@cs.ox.ac.uk")
    share(client, lab["project"], email="rita@cs.ox.ac.uk", access="read")
    as_user(client, "rita@cs.ox.ac.uk")
    page = client.get(f"/analyses/{run}").text
    assert "/cancel" not in page
    assert post(client, f"/analyses/{run}/cancel", page).status_code == 403
    as_user(client, "ada@cs.ox.ac.uk")
    post(client, f"/analyses/{run}/cancel", client.get(f"/analyses/{run}").text)
    with app.app_context():
        assert db.session.get(Analysis, run).state.value == "cancelled"


def test_both_sides_see_what_is_shared(app, client, smtp, lab):
    as_user(client, "ada@cs.ox.ac.uk")
    share(client, lab["project"], email="will@cs.ox.ac.uk", access="write")
    smtp.wait_for("will@cs.ox.ac.uk", "shared the project RNA-seq with you")
    mine = client.get("/sharing/").text
    assert "will@cs.ox.ac.uk" in mine and "read-write" in mine
    as_user(client, "will@cs.ox.ac.uk")
    theirs = client.get("/shared/").text
    assert "RNA-seq" in theirs and "Ada Lovelace" in theirs and "read-write" in theirs
    assert "RNA-seq" in client.get("/projects/").text  # on the dashboard too
    as_user(client, "bob@cs.ox.ac.uk")
    assert "RNA-seq" not in client.get("/shared/").text


def test_a_share_link_is_shown_once_then_listed_until_revoked(app, client, lab):
    run = make_analysis(app, lab["project"], pipeline="table-profiler")
    as_user(client, "ada@cs.ox.ac.uk")
    page = client.get(f"/analyses/{run}").text
    made = post(client, f"/analyses/{run}/links", page, days="7")
    assert made.headers["Cache-Control"] == "no-store"
    address = re.search(r'value="(http[^"]*/s/lqs_[^"]+)"', made.text)[1]
    secret = address.rsplit("/", 1)[1]
    mine = client.get("/sharing/").text
    assert secret[:10] in mine and secret not in mine  # only its first characters
    signed_out(client)
    assert client.get(f"/s/{secret}").status_code == 200
    as_user(client, "ada@cs.ox.ac.uk")
    page = client.get(f"/analyses/{run}").text
    link_id = re.search(r'action="/links/(\d+)/revoke"', page)[1]
    post(client, f"/links/{link_id}/revoke", page)
    signed_out(client)
    assert client.get(f"/s/{secret}").status_code == 404


def test_sharing_is_in_the_audit_trail(app, client, lab):
    as_user(client, "ada@cs.ox.ac.uk")
    group = make_group(client)
    invite(client, group, "rita@cs.ox.ac.uk")
    share(client, lab["project"], group=str(group), access="read")
    with app.app_context():
        member = db.session.scalar(
            sa.select(GroupMember).filter_by(email="rita@cs.ox.ac.uk")
        )
        member_id = member.id
    page = client.get(f"/groups/{group}").text
    post(client, f"/groups/{group}/members/{member_id}/remove", page)
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEvent.action)).all()
    assert {"group.created", "group.invited", "project.shared"} <= set(actions)
    assert "group.member_removed" in actions


def test_a_link_opens_nothing_once_its_maker_may_no_longer_read(app, client, lab):
    """Will made a link to his run in Ada's project; Ada removes his share: the
    link stops, Ada sees it (made by Will) and revokes it, Will no longer can."""
    as_user(client, "ada@cs.ox.ac.uk")
    share(client, lab["project"], email="will@cs.ox.ac.uk", access="write")
    run = make_analysis(
        app, lab["project"], owner_id=lab["will"], pipeline="table-profiler"
    )
    with app.app_context():
        from frontend.core.layout import output_dir

        out = output_dir(db.session.get(Analysis, run))
    out.mkdir(parents=True)
    (out / "summary.csv").write_text("a,b\n1,2\n")
    as_user(client, "will@cs.ox.ac.uk")
    page = client.get(f"/analyses/{run}").text
    made = post(client, f"/analyses/{run}/links", page, days="7")
    secret = re.search(r"/s/(lqs_[A-Za-z0-9_-]+)", made.text)[1]
    mine = client.get("/sharing/").text
    link_id = re.search(r'action="/links/(\d+)/revoke"', mine)[1]
    signed_out(client)
    for path in ("", "/outputs.zip", "/outputs/summary.csv"):
        with client.get(f"/s/{secret}{path}") as opened:
            assert opened.status_code == 200, path
    as_user(client, "ada@cs.ox.ac.uk")
    mine = client.get("/sharing/").text
    assert secret[:10] in mine and "will@cs.ox.ac.uk" in mine
    with app.app_context():
        share_id = db.session.scalar(sa.select(ProjectShare.id))
    page = client.get(f"/projects/{lab['project']}/sharing").text
    post(client, f"/projects/{lab['project']}/sharing/{share_id}/remove", page)
    signed_out(client)
    for path in ("", "/outputs.zip", "/outputs/summary.csv", "/status"):
        assert client.get(f"/s/{secret}{path}").status_code == 404, path
    as_user(client, "will@cs.ox.ac.uk")
    assert secret[:10] not in client.get("/sharing/").text
    page = client.get("/sharing/").text
    assert post(client, f"/links/{link_id}/revoke", page).status_code == 404
    as_user(client, "ada@cs.ox.ac.uk")
    mine = client.get("/sharing/").text
    assert "will@cs.ox.ac.uk can no longer read this analysis" in mine
    assert post(client, f"/links/{link_id}/revoke", mine).status_code == 302
    assert "revoked" in client.get("/sharing/").text
