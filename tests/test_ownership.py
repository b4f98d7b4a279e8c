"""Every project, analysis and sharing route, for every kind of visitor.

Ada owns a project and shares it with her group (Rita is a member: read-only) and
with Will (read-write); Bob is an outsider. Each route needs a level of access,
written below by hand; each visitor gets exactly what its access allows: no access
is 404, too little is 403, and a refused request changes nothing. The routes come
from the app's URL map, so a new route fails this test until its need is written
down here.
"""

import pytest
import sqlalchemy as sa

from frontend import create_app
from frontend.core.extensions import db
from frontend.core.layout import analysis_dir
from frontend.core.models import (
    Analysis,
    AnalysisState,
    Batch,
    Group,
    GroupMember,
    Project,
    ProjectFile,
    ProjectShare,
    ShareLink,
    User,
    utcnow,
)
from frontend.sharing import services as sharing
from tests.conftest import Auth, csrf_token, make_analysis, upload

MISSING = 987654

# What each route needs. "read", "write", "owner": that access to the project;
# "control": to have run the analysis or to own its project; "member": to be in
# (or invited to) the group; "manage": to own the group; "link owner": to have
# made the link or own its analysis' project; "signed in": nothing but an
# account (the user's own lists); "link": a share link's secret, no account.
NEEDS = {
    "projects.index": "signed in",
    "projects.new": "signed in",
    "projects.browse": "read",
    "projects.entry": "read",
    "projects.raw": "read",
    "projects.download": "read",
    "projects.download_project": "read",
    "projects.make_folder": "write",
    "projects.upload": "write",
    "projects.upload_check": "write",
    "projects.rename": "write",
    "projects.delete_entry": "write",
    "projects.settings": "owner",
    "projects.delete": "owner",
    "projects.keep": "owner",
    "analyses.queue": "signed in",
    "analyses.history": "signed in",
    "analyses.detail": "read",
    "analyses.status": "read",
    "analyses.log": "read",
    "analyses.output": "read",
    "analyses.outputs_zip": "read",
    "analyses.run_elsewhere": "read",
    "analyses.choose": "write",
    "analyses.run": "write",
    "analyses.cancel": "control",
    "analyses.delete": "control",
    "analyses.keep": "control",
    "analyses.add_to_project": "read",
    "analyses.batch": "read",
    "analyses.batch_status": "read",
    "analyses.batch_outputs_zip": "read",
    "analyses.batch_cancel": "control",
    "sharing.groups": "signed in",
    "sharing.new_group": "signed in",
    "sharing.shared_with_me": "signed in",
    "sharing.what_i_share": "signed in",
    "sharing.group": "member",
    "sharing.accept": "member",
    "sharing.leave": "member",
    "sharing.invite": "manage",
    "sharing.remove_member": "manage",
    "sharing.delete_group": "manage",
    "sharing.project_sharing": "owner",
    "sharing.share": "owner",
    "sharing.unshare": "owner",
    "sharing.make_link": "control",
    "sharing.revoke_link": "link owner",
    "sharing.link_detail": "link",
    "sharing.link_status": "link",
    "sharing.link_output": "link",
    "sharing.link_outputs_zip": "link",
    "sharing.link_log": "link",
}
LEVELS = {"read": 1, "write": 2, "owner": 3}
# Each visitor's access to Ada's project and group.
ACTORS = {
    "ada": {"project": 3, "control": True, "group": "manage", "links": True},
    "rita": {"project": 1, "control": False, "group": "member", "links": False},
    "will": {"project": 2, "control": False, "group": None, "links": False},
    "bob": {"project": 0, "control": False, "group": None, "links": False},
}


def expected(need: str, actor: dict) -> int | None:
    """403 or 404 when the actor must be refused; None when it may go ahead."""
    if need in LEVELS:
        if not actor["project"]:
            return 404
        return None if actor["project"] >= LEVELS[need] else 403
    if need == "control":
        if not actor["project"]:
            return 404
        return None if actor["control"] else 403
    if need == "member":
        return None if actor["group"] else 404
    if need == "manage":
        return None if actor["group"] == "manage" else 404
    if need == "link owner":
        return None if actor["links"] else 404
    return None  # signed in


def app_routes():
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SECURITY_PASSWORD_SALT": "y",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
        }
    )
    cases = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("projects.", "analyses.", "sharing.")):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                cases.append((rule.endpoint, rule.rule, method))
    return cases


ROUTES = app_routes()
SIGNED_IN = [
    pytest.param(rule, method, NEEDS.get(endpoint), id=f"{method} {rule}")
    for endpoint, rule, method in ROUTES
    if NEEDS.get(endpoint) != "link"
]
# Routes that name something of Ada's (every one but the user's own lists).
ID_ROUTES = [param for param in SIGNED_IN if "<" in param.values[0]]
LINK_ROUTES = [
    pytest.param(rule, id=rule)
    for endpoint, rule, method in ROUTES
    if NEEDS.get(endpoint) == "link"
]

PLACEHOLDERS = {
    "<int:project_id>": "project",
    "<int:entry_id>": "entry",
    "<int:analysis_id>": "analysis",
    "<int:group_id>": "group",
    "<int:member_id>": "member",
    "<int:share_id>": "share",
    "<int:link_id>": "link",
    "<int:batch_id>": "batch",
    "<secret>": "secret",
}


def test_every_route_says_what_it_needs():
    unknown = sorted({endpoint for endpoint, _, _ in ROUTES} - set(NEEDS))
    assert not unknown, f"write down what these routes need: {unknown}"


def fill(rule: str, ids: dict) -> str:
    url = rule
    for placeholder, key in PLACEHOLDERS.items():
        url = url.replace(placeholder, str(ids[key]))
    url = url.replace("<name>", "table-profiler").replace("<path:relpath>", "out.txt")
    assert "<" not in url, f"test_ownership does not know how to fill {rule}"
    return url


@pytest.fixture
def world(app, client, make_user, make_project):
    """Ada's project (a file in a folder, an analysis with an output, a link to
    it), shared with her group (Rita joined) read-only and with Will read-write;
    her other project has an analysis with a link of its own; Bob has nothing."""
    ada = make_user(email="ada@cs.ox.ac.uk")
    for name in ("rita", "will", "bob"):
        make_user(email=f"{name}@cs.ox.ac.uk", first_name=name.title())
    project = make_project(ada, name="RNA-seq")
    other = make_project(ada, name="Secret project")
    auth = Auth(client)
    auth.login("ada@cs.ox.ac.uk")
    upload(client, project, "data/table.csv", b"a,b\n1,2\n")
    auth.logout()
    analysis = make_analysis(app, project, pipeline="template")
    shown = make_analysis(
        app, other, pipeline="template", state=AnalysisState.SUCCEEDED
    )
    with app.app_context():
        entry = db.session.scalar(
            sa.select(ProjectFile.id).filter_by(path="data/table.csv")
        )
        for number, text in ((analysis, "result of A"), (shown, "result of B")):
            folder = analysis_dir(db.session.get(Analysis, number))
            (folder / "output").mkdir(parents=True)
            name = "out.txt" if number == analysis else "b.txt"
            (folder / "output" / name).write_text(text)
            (folder / "log.txt").write_text(f"log of {text}")
        stamp = utcnow()
        group = Group(owner_id=ada, name="Ada's lab")
        group.members = [
            GroupMember(email="ada@cs.ox.ac.uk", joined_at=stamp),
            GroupMember(email="rita@cs.ox.ac.uk", joined_at=stamp),
        ]
        db.session.add(group)
        db.session.flush()
        db.session.add(ProjectShare(project_id=project, group_id=group.id))
        batch = Batch(owner_id=ada, project_id=project, pipeline="template", field="x")
        batch.analyses.append(db.session.get(Analysis, analysis))
        db.session.add(batch)
        will_share = ProjectShare(
            project_id=project, email="will@cs.ox.ac.uk", can_write=True
        )
        db.session.add(will_share)
        db.session.commit()
        owner = db.session.get(User, ada)
        link, _ = sharing.make_link(db.session.get(Analysis, analysis), owner, None)
        _, secret = sharing.make_link(db.session.get(Analysis, shown), owner, 7)
        ids = {
            "project": project,
            "entry": entry,
            "analysis": analysis,
            "group": group.id,
            "member": group.members[1].id,
            "share": will_share.id,
            "link": link.id,
            "batch": batch.id,
            "secret": secret,
            "shown": shown,
        }
    return {"ids": ids, "auth": auth}


def send(client, method, url, token):
    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(
            url,
            data={"csrf_token": token, "name": "x"},
            headers={"X-CSRFToken": token},
        )
    response.get_data()  # read whole (a file's body), then its file closed
    response.close()
    return response


def untouched(app, world) -> bool:
    """Nothing of Ada's changed."""
    ids = world["ids"]
    with app.app_context():
        paths = db.session.scalars(
            sa.select(ProjectFile.path).filter_by(project_id=ids["project"])
        ).all()
        analysis = db.session.get(Analysis, ids["analysis"])
        project = db.session.get(Project, ids["project"])
        group = db.session.get(Group, ids["group"])
        shares = db.session.scalar(sa.select(sa.func.count(ProjectShare.id)))
        link = db.session.get(ShareLink, ids["link"])
        return (
            sorted(paths) == ["data", "data/table.csv"]
            and analysis.state.value == "queued"
            and project is not None
            and project.name == "RNA-seq"
            and group is not None
            and len(group.members) == 2
            and shares == 2
            and link.revoked_at is None
        )


@pytest.mark.parametrize(("rule", "method", "need"), SIGNED_IN)
def test_anonymous_visitors_are_sent_to_login(client, app, world, rule, method, need):
    token = csrf_token(client.get("/login").text)
    response = send(client, method, fill(rule, world["ids"]), token)
    assert response.status_code in (302, 401)
    assert "/login" in response.headers.get("Location", "/login")
    assert untouched(app, world)


@pytest.mark.parametrize("actor", ["rita", "will", "bob"])
@pytest.mark.parametrize(("rule", "method", "need"), ID_ROUTES)
def test_each_visitor_gets_what_its_access_allows(
    client, app, world, rule, method, need, actor
):
    world["auth"].login(f"{actor}@cs.ox.ac.uk")
    token = csrf_token(client.get("/projects/").text)
    response = send(client, method, fill(rule, world["ids"]), token)
    refusal = expected(need, ACTORS[actor])
    if refusal is None:
        assert response.status_code < 400 or response.status_code in (400, 409, 413)
    else:
        assert response.status_code == refusal
        assert "table.csv" not in response.text
        assert untouched(app, world)


@pytest.mark.parametrize(("rule", "method", "need"), ID_ROUTES)
def test_the_owner_may_do_everything(client, app, world, rule, method, need):
    world["auth"].login("ada@cs.ox.ac.uk")
    token = csrf_token(client.get("/projects/").text)
    response = send(client, method, fill(rule, world["ids"]), token)
    assert response.status_code not in (403, 404) and response.status_code < 500


@pytest.mark.parametrize(("rule", "method", "need"), ID_ROUTES)
def test_missing_ids_get_404(client, app, world, rule, method, need):
    world["auth"].login("ada@cs.ox.ac.uk")
    token = csrf_token(client.get("/projects/").text)
    for key in set(PLACEHOLDERS.values()) - {"secret"}:
        if not any(p in rule for p, k in PLACEHOLDERS.items() if k == key):
            continue
        response = send(
            client, method, fill(rule, {**world["ids"], key: MISSING}), token
        )
        assert response.status_code == 404, key
    assert untouched(app, world)


def opened(client, url: str):
    """GET ``url`` anonymously, its body read whole and its file closed."""
    return send(client, "GET", url, "")


@pytest.mark.parametrize("rule", LINK_ROUTES)
def test_a_share_link_opens_its_analysis_and_nothing_else(client, world, rule):
    ids = world["ids"]
    url = fill(rule, ids).replace("/outputs/out.txt", "/outputs/b.txt")
    response = opened(client, url)
    assert response.status_code == 200
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert b"result of A" not in response.data and b"RNA-seq" not in response.data
    assert b"Secret project" not in response.data  # the project is not shown
    # Another analysis' output, or a made-up secret, opens nothing.
    assert opened(client, f"/s/{ids['secret']}/outputs/out.txt").status_code == 404
    made_up = fill(rule, {**ids, "secret": "lqs_nothing"})
    assert opened(client, made_up).status_code == 404


def test_share_link_pages_show_the_analysis_read_only(client, world):
    secret = world["ids"]["secret"]
    page = opened(client, f"/s/{secret}").text
    assert "b.txt" in page and f"/s/{secret}/outputs/b.txt" in page
    assert "Cancel" not in page and "Run again" not in page
    assert opened(client, f"/s/{secret}/outputs/b.txt").data == b"result of B"
    assert "log of result of B" in opened(client, f"/s/{secret}/log").text


def test_a_revoked_or_expired_link_opens_nothing_at_once(app, client, world):
    secret, shown = world["ids"]["secret"], world["ids"]["shown"]
    assert client.get(f"/s/{secret}").status_code == 200
    with app.app_context():
        link = db.session.scalar(sa.select(ShareLink).filter_by(analysis_id=shown))
        link.expires_at = utcnow()
        db.session.commit()
    assert client.get(f"/s/{secret}").status_code == 404
    world["auth"].login("ada@cs.ox.ac.uk")
    page = client.get(f"/analyses/{world['ids']['analysis']}").text
    client.post(
        f"/links/{world['ids']['link']}/revoke", data={"csrf_token": csrf_token(page)}
    )
    with app.app_context():
        assert db.session.get(ShareLink, world["ids"]["link"]).revoked_at is not None


def test_a_removed_member_and_an_unshared_person_lose_access_at_once(
    app, client, world
):
    ids, auth = world["ids"], world["auth"]
    auth.login("rita@cs.ox.ac.uk")
    assert client.get(f"/projects/{ids['project']}").status_code == 200
    assert client.get(f"/analyses/{ids['analysis']}").status_code == 200
    auth.logout()
    auth.login("ada@cs.ox.ac.uk")
    page = client.get(f"/groups/{ids['group']}").text
    client.post(
        f"/groups/{ids['group']}/members/{ids['member']}/remove",
        data={"csrf_token": csrf_token(page)},
    )
    page = client.get(f"/projects/{ids['project']}/sharing").text
    client.post(
        f"/projects/{ids['project']}/sharing/{ids['share']}/remove",
        data={"csrf_token": csrf_token(page)},
    )
    auth.logout()
    for who in ("rita", "will"):
        auth.login(f"{who}@cs.ox.ac.uk")
        assert client.get(f"/projects/{ids['project']}").status_code == 404
        assert client.get(f"/analyses/{ids['analysis']}/log").status_code == 404
        auth.logout()


def test_folder_parameter_of_another_project_is_404(client, app, world, make_project):
    world["auth"].login("bob@cs.ox.ac.uk")
    with app.app_context():
        bob = db.session.scalar(sa.select(User.id).filter_by(email="bob@cs.ox.ac.uk"))
    bobs = make_project(bob, name="Bob's")
    with app.app_context():
        folder = db.session.scalar(sa.select(ProjectFile.id).filter_by(path="data"))
    assert client.get(f"/projects/{bobs}?folder={folder}").status_code == 404
    response = upload(client, bobs, "x.txt", b"x", folder=str(folder))
    assert response.status_code == 404
