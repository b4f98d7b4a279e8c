"""Every project route, for every kind of visitor who must not get in.

The routes come from the app's URL map, so a new route is checked automatically
(and this test fails if it needs ids it does not know how to fill).
"""

import pytest

from frontend import create_app
from frontend.analyses.services import analysis_dir
from frontend.extensions import db
from frontend.models import Analysis, ProjectFile
from tests.conftest import Auth, csrf_token, upload

MISSING = 987654


def project_routes():
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
        if rule.endpoint.startswith(("projects.", "analyses.")):
            methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
            for method in methods:
                cases.append(
                    pytest.param(rule.rule, method, id=f"{method} {rule.rule}")
                )
    return cases


ROUTES = project_routes()
# Routes that name a project (all but the user's own dashboard and new-project form).
ID_ROUTES = [param for param in ROUTES if "<int:" in param.values[0]]


PLACEHOLDERS = {
    "<int:project_id>": "project",
    "<int:entry_id>": "entry",
    "<int:analysis_id>": "analysis",
}


def fill(rule: str, ids: dict) -> str:
    url = rule
    for placeholder, key in PLACEHOLDERS.items():
        url = url.replace(placeholder, str(ids[key]))
    url = url.replace("<name>", "template").replace("<path:relpath>", "out.txt")
    assert "<" not in url, f"test_ownership does not know how to fill {rule}"
    return url


@pytest.fixture
def world(app, client, make_user, make_project):
    """Ada owns a project with a file in a folder; Bob owns nothing of hers."""
    ada = make_user(email="ada@cs.ox.ac.uk")
    make_user(email="bob@cs.ox.ac.uk")
    project = make_project(ada)
    auth = Auth(client)
    auth.login("ada@cs.ox.ac.uk")
    upload(client, project, "data/table.csv", b"a,b\n1,2\n")
    auth.logout()
    with app.app_context():
        entry = db.session.scalar(
            db.select(ProjectFile.id).filter_by(path="data/table.csv")
        )
        analysis = Analysis(
            owner_id=ada,
            project_id=project,
            pipeline="template",
            pipeline_version="0.1.0",
            image="x",
            params={},
        )
        db.session.add(analysis)
        db.session.commit()
        folder = analysis_dir(analysis)
        (folder / "output").mkdir(parents=True)
        (folder / "output" / "out.txt").write_text("result")
        (folder / "log.txt").write_text("log")
        ids = {"project": project, "entry": entry, "analysis": analysis.id}
    return {"ids": ids, "auth": auth}


def send(client, method, url, token):
    if method == "GET":
        return client.get(url)
    return client.post(
        url, data={"csrf_token": token, "name": "x"}, headers={"X-CSRFToken": token}
    )


def untouched(app, world):
    with app.app_context():
        paths = db.session.scalars(db.select(ProjectFile.path)).all()
        analysis = db.session.get(Analysis, world["ids"]["analysis"])
        state = analysis.state.value
    return sorted(paths) == ["data", "data/table.csv"] and state == "queued"


@pytest.mark.parametrize(("rule", "method"), ROUTES)
def test_anonymous_visitors_are_sent_to_login(client, app, world, rule, method):
    token = csrf_token(client.get("/login").text)
    response = send(client, method, fill(rule, world["ids"]), token)
    assert response.status_code in (302, 401)
    assert "/login" in response.headers.get("Location", "/login")
    assert untouched(app, world)


@pytest.mark.parametrize(("rule", "method"), ID_ROUTES)
def test_other_users_get_404_and_change_nothing(client, app, world, rule, method):
    world["auth"].login("bob@cs.ox.ac.uk")
    token = csrf_token(client.get("/projects/").text)
    response = send(client, method, fill(rule, world["ids"]), token)
    assert response.status_code == 404
    assert "table.csv" not in response.text
    assert untouched(app, world)


@pytest.mark.parametrize(("rule", "method"), ID_ROUTES)
def test_missing_ids_get_404(client, app, world, rule, method):
    world["auth"].login("ada@cs.ox.ac.uk")
    token = csrf_token(client.get("/projects/").text)
    for key in PLACEHOLDERS.values():
        if not any(p in rule for p, k in PLACEHOLDERS.items() if k == key):
            continue
        response = send(
            client, method, fill(rule, {**world["ids"], key: MISSING}), token
        )
        assert response.status_code == 404, key
    assert untouched(app, world)


def test_folder_parameter_of_another_project_is_404(client, app, world, make_project):
    world["auth"].login("bob@cs.ox.ac.uk")
    with app.app_context():
        from frontend.models import User

        bob = db.session.scalar(db.select(User.id).filter_by(email="bob@cs.ox.ac.uk"))
    bobs = make_project(bob, name="Bob's")
    with app.app_context():
        folder = db.session.scalar(db.select(ProjectFile.id).filter_by(path="data"))
    assert client.get(f"/projects/{bobs}?folder={folder}").status_code == 404
    response = upload(client, bobs, "x.txt", b"x", folder=str(folder))
    assert response.status_code == 404
