"""The REST API at /api/v1 and the personal tokens it takes: made on the profile
page, by the command line, revoked by their owner or an admin; every route,
with the web's checks and the web's ownership rule."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import timedelta

import pytest

from frontend.core.extensions import db
from frontend.core.layout import analysis_dir
from frontend.core.models import (
    Analysis,
    AnalysisState,
    ApiToken,
    AuditEvent,
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
from tests.conftest import TEST_PIPELINES, admin_action, csrf_token, make_analysis

ADA, BOB = "ada@cs.ox.ac.uk", "bob@cs.ox.ac.uk"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "PIPELINES_DIR": str(TEST_PIPELINES)}


@pytest.fixture
def token_for(app, runner):
    """A new token for an account, made by `flask tokens create`."""

    def make(email: str = ADA, *options: str) -> str:
        result = runner.invoke(
            args=["tokens", "create", "--email", email, "--name", "tests", *options]
        )
        assert result.exit_code == 0, result.output
        return result.output.strip()

    return make


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def ada(make_user, token_for):
    make_user(email=ADA)
    return bearer(token_for(ADA))


def tokens_of(app, email: str) -> list[ApiToken]:
    with app.app_context():
        user = db.session.scalar(db.select(User).filter_by(email=email))
        rows = db.session.scalars(db.select(ApiToken).filter_by(user_id=user.id)).all()
        db.session.expunge_all()
        return rows


def audit_actions(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(db.select(AuditEvent.action)).all()


# --- Tokens ---------------------------------------------------------------------------


def test_a_token_from_the_command_line_works_and_only_its_digest_is_kept(
    app, client, ada
):
    secret = ada["Authorization"].split()[1]
    assert secret.startswith("lq_") and len(secret) > 40
    reply = client.get("/api/v1/projects", headers=ada)
    assert reply.status_code == 200
    assert reply.json == []
    [row] = tokens_of(app, ADA)
    assert secret not in (row.digest, row.prefix)
    assert secret.startswith(row.prefix)
    assert row.last_used_at is not None and row.last_used_ip == "127.0.0.1"
    assert "token.created" in audit_actions(app)


def test_profile_makes_a_token_shown_once_and_revokes_it(app, client, auth, make_user):
    make_user(email=ADA)
    auth.login(ADA)
    profile = client.get("/account/profile")
    assert "You have no tokens" in profile.text
    made = client.post(
        "/account/tokens",
        data={
            "name": "laptop",
            "days": "30",
            "csrf_token": csrf_token(profile.text),
        },
    )
    assert made.status_code == 201
    assert made.headers["Cache-Control"] == "no-store"
    secret = made.text.split('id="token-secret"')[1].split('value="')[1].split('"')[0]
    # Not flashed: the session cookie never carries it.
    assert secret not in (made.headers.get("Set-Cookie") or "")
    listed = client.get("/account/profile").text
    assert "laptop" in listed and secret[:10] in listed and secret not in listed
    [row] = tokens_of(app, ADA)
    assert (row.expires_at - row.created_at).days == 30

    api = app.test_client()
    assert api.get("/api/v1/projects", headers=bearer(secret)).status_code == 200
    revoked = client.post(
        f"/account/tokens/{row.id}/revoke",
        data={"csrf_token": csrf_token(listed)},
        follow_redirects=True,
    )
    assert "was revoked" in revoked.text
    refused = api.get("/api/v1/projects", headers=bearer(secret))
    assert refused.status_code == 401
    assert "revoked" in refused.json["message"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert {"token.created", "token.revoked"} <= set(audit_actions(app))


def test_token_form_refusals_say_why_and_make_nothing(app, client, auth, make_user):
    make_user(email=ADA)
    auth.login(ADA)
    app.config.update(API_TOKENS_PER_USER=1, API_TOKEN_MAX_DAYS=90)
    page = client.get("/account/profile").text
    assert 'value="365"' not in page and 'value="0"' not in page  # beyond the site's
    token = csrf_token(page)
    ok = client.post(
        "/account/tokens", data={"name": "a", "days": "7", "csrf_token": token}
    )
    assert ok.status_code == 201
    again = client.post(
        "/account/tokens", data={"name": "a", "days": "7", "csrf_token": token}
    )
    assert again.status_code == 400
    assert "already have a token named" in again.text
    more = client.post(
        "/account/tokens", data={"name": "b", "days": "7", "csrf_token": token}
    )
    assert "the most allowed" in more.text
    forever = client.post(
        "/account/tokens", data={"name": "c", "days": "0", "csrf_token": token}
    )
    assert forever.status_code == 400
    assert len(tokens_of(app, ADA)) == 1


def test_someone_elses_token_cannot_be_revoked(app, client, auth, make_user, token_for):
    make_user(email=ADA)
    make_user(email=BOB)
    token_for(BOB)
    [bobs] = tokens_of(app, BOB)
    auth.login(ADA)
    page = client.get("/account/profile").text
    reply = client.post(
        f"/account/tokens/{bobs.id}/revoke", data={"csrf_token": csrf_token(page)}
    )
    assert reply.status_code == 404
    assert tokens_of(app, BOB)[0].revoked_at is None


def test_an_admin_revokes_a_token(app, client, auth, make_user, token_for):
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    make_user(email=ADA)
    secret = token_for(ADA)
    [row] = tokens_of(app, ADA)
    auth.login("root@cs.ox.ac.uk")
    listing = client.get("/admin/admin_tokens/")
    assert row.prefix in listing.text and secret not in listing.text
    admin_action(client, "admin_tokens", "revoke", row.id)
    assert client.get("/api/v1/projects", headers=bearer(secret)).status_code == 401
    with app.app_context():
        event = db.session.scalar(
            db.select(AuditEvent).filter_by(action="token.revoked")
        )
        assert event.detail == "by an admin" and event.actor_email == "root@cs.ox.ac.uk"


def test_expired_wrong_and_deactivated_tokens_are_refused(app, client, ada):
    assert client.get("/api/v1/projects").status_code == 401
    for header in ("Bearer lq_" + "x" * 43, "Bearer", "Token abc", "Basic !!"):
        reply = client.get("/api/v1/projects", headers={"Authorization": header})
        assert reply.status_code == 401, header
        assert reply.is_json
    with app.app_context():
        row = db.session.scalar(db.select(ApiToken))
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get("/api/v1/projects", headers=ada).status_code == 401
    with app.app_context():
        row = db.session.scalar(db.select(ApiToken))
        row.expires_at = None
        db.session.scalar(db.select(User).filter_by(email=ADA)).active = False
        db.session.commit()
    assert client.get("/api/v1/projects", headers=ada).status_code == 401


def test_basic_auth_takes_the_token_as_password(client, ada):
    import base64

    secret = ada["Authorization"].split()[1]
    basic = base64.b64encode(f"anyone:{secret}".encode()).decode()
    reply = client.get("/api/v1/projects", headers={"Authorization": f"Basic {basic}"})
    assert reply.status_code == 200


def test_a_read_only_token_reads_but_changes_nothing(
    app, client, make_user, make_project, token_for
):
    user = make_user(email=ADA)
    project = make_project(user)
    reader = bearer(token_for(ADA, "--read-only"))
    assert client.get(f"/api/v1/projects/{project}", headers=reader).status_code == 200
    writes = [
        client.post("/api/v1/projects", json={"name": "New"}, headers=reader),
        client.patch(f"/api/v1/projects/{project}", json={"name": "X"}, headers=reader),
        client.put(
            f"/api/v1/projects/{project}/files?path=a.txt", data=b"a", headers=reader
        ),
        client.post(
            "/api/v1/analyses",
            json={"project_id": project, "pipeline": "writer"},
            headers=reader,
        ),
        client.delete(f"/api/v1/projects/{project}", headers=reader),
    ]
    assert [w.status_code for w in writes] == [403] * 5
    assert "read-only" in writes[0].json["message"]
    with app.app_context():
        assert db.session.scalars(db.select(Project.name)).all() == ["RNA-seq"]
        assert db.session.scalar(db.select(db.func.count(ProjectFile.id))) == 0
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_the_api_ignores_the_browser_session(app, client, auth, make_user):
    """A signed-in browser cannot act through the API (so it needs no CSRF
    token), and API answers set no cookie."""
    make_user(email=ADA)
    auth.login(ADA)
    assert client.get("/projects/").status_code == 200
    reply = client.post("/api/v1/projects", json={"name": "Sneaky"})
    assert reply.status_code == 401
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Project.id))) == 0
    assert "Set-Cookie" not in reply.headers
    assert client.get("/projects/").status_code == 200  # still signed in


def test_writes_per_token_are_limited(app, client, ada):
    app.config["API_WRITES_PER_MINUTE"] = 3
    codes = [
        client.post("/api/v1/projects", json={"name": f"P{n}"}, headers=ada).status_code
        for n in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    refused = client.post("/api/v1/projects", json={"name": "P9"}, headers=ada)
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert "Wait" in refused.json["message"]
    assert client.get("/api/v1/projects", headers=ada).status_code == 200  # reads go on
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Project.id))) == 3


def test_making_tokens_is_rate_limited(app, client, auth, make_user):
    make_user(email=ADA)
    app.config.update(RATE_LIMIT_FREE_PER_IP=2, API_TOKENS_PER_USER=50)
    auth.login(ADA)
    token = csrf_token(client.get("/account/profile").text)
    codes = [
        client.post(
            "/account/tokens", data={"name": f"t{n}", "days": "7", "csrf_token": token}
        ).status_code
        for n in range(4)
    ]
    assert codes[:3] == [201, 201, 201] and codes[3] == 429
    assert len(tokens_of(app, ADA)) == 3


def test_tokens_cli_lists_and_revokes(app, runner, ada):
    listed = runner.invoke(args=["tokens", "list", "--email", ADA])
    [line] = listed.output.splitlines()
    token_id, state, scope, prefix, name = line.split("\t")
    assert (state, scope, name) == ("active", "read-write", "tests")
    revoked = runner.invoke(args=["tokens", "revoke", "--email", ADA, token_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert runner.invoke(args=["tokens", "list", "--email", ADA]).output == ""
    unknown = runner.invoke(
        args=["tokens", "create", "--email", "x@y.ac.uk", "--name", "n"]
    )
    assert unknown.exit_code != 0 and "no account" in unknown.output


# --- Projects and files ---------------------------------------------------------------


def test_projects_shared_with_the_caller_are_listed_with_their_role(
    app, client, ada, make_user, make_project
):
    from frontend.core.models import ProjectShare

    mine = client.post("/api/v1/projects", json={"name": "Atlas"}, headers=ada).json
    bob = make_user(email=BOB)
    carol = make_user(email="carol@cs.ox.ac.uk")
    read, write = make_project(bob, "Bench"), make_project(bob, "Plates")
    make_project(carol, "Private")
    with app.app_context():
        db.session.add(ProjectShare(project_id=read, email=ADA))
        db.session.add(ProjectShare(project_id=write, email=ADA, can_write=True))
        db.session.commit()

    def listed(query: str = "") -> dict[str, str]:
        reply = client.get(f"/api/v1/projects{query}", headers=ada)
        assert reply.status_code == 200, reply.json
        return {p["name"]: p["role"] for p in reply.json}

    assert listed() == {
        "Atlas": "owner",
        "Bench": "read-only",
        "Plates": "read-write",
    }
    assert listed("?owned=true") == {"Atlas": "owner"}
    assert listed("?shared=true") == {"Bench": "read-only", "Plates": "read-write"}
    one = client.get(f"/api/v1/projects/{read}", headers=ada).json
    assert (one["name"], one["role"]) == ("Bench", "read-only")
    assert client.get(f"/api/v1/projects/{mine['id']}", headers=ada).json["role"] == (
        "owner"
    )


def test_projects_are_made_renamed_and_deleted(app, client, ada):
    made = client.post(
        "/api/v1/projects", json={"name": "Reads", "description": "run 4"}, headers=ada
    )
    assert made.status_code == 201
    project = made.json["id"]
    assert made.json["file_count"] == 0
    clash = client.post("/api/v1/projects", json={"name": "Reads"}, headers=ada)
    assert (
        clash.status_code == 409 and "already have a project" in clash.json["message"]
    )
    missing = client.post("/api/v1/projects", json={"description": "x"}, headers=ada)
    assert missing.status_code == 422
    assert "name" in missing.json["errors"]["json"]
    renamed = client.patch(
        f"/api/v1/projects/{project}", json={"name": "Reads 2"}, headers=ada
    )
    assert renamed.json["name"] == "Reads 2" and renamed.json["description"] == "run 4"
    assert [p["name"] for p in client.get("/api/v1/projects", headers=ada).json] == [
        "Reads 2"
    ]
    assert client.delete(f"/api/v1/projects/{project}", headers=ada).status_code == 204
    assert client.get(f"/api/v1/projects/{project}", headers=ada).status_code == 404


def test_files_are_uploaded_listed_downloaded_and_deleted(app, client, ada):
    project = client.post("/api/v1/projects", json={"name": "P"}, headers=ada).json[
        "id"
    ]
    url = f"/api/v1/projects/{project}/files"
    body = b"id,value\n" + b"7,1.5\n" * 800_000  # 4.8 MB: more than a form may send
    stored = client.put(f"{url}?path=tables/big.csv", data=body, headers=ada)
    assert stored.status_code == 201, stored.json
    assert stored.json["status"] == "stored" and stored.json["path"] == "tables/big.csv"
    clash = client.put(f"{url}?path=tables/big.csv", data=b"x", headers=ada)
    assert clash.status_code == 409
    kept = client.put(
        f"{url}?path=tables/big.csv&on_clash=keep", data=b"x", headers=ada
    )
    assert kept.json["path"] == "tables/big (1).csv"
    listing = client.get(url, headers=ada).json
    assert [(e["path"], e["is_dir"], e["size"]) for e in listing] == [
        ("tables", True, 0),
        ("tables/big (1).csv", False, 1),
        ("tables/big.csv", False, len(body)),
    ]
    entry = next(e for e in listing if e["path"] == "tables/big.csv")
    with client.get(f"{url}/{entry['id']}/content", headers=ada) as got:
        assert got.data == body
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["Content-Disposition"].startswith("attachment")
    with client.get(f"{url}/{listing[0]['id']}/content", headers=ada) as folder:
        names = zipfile.ZipFile(io.BytesIO(folder.data)).namelist()
    assert sorted(names) == ["big (1).csv", "big.csv"]
    # Its checksum, for a script to tell whether its copy is the same.
    checksum = client.get(f"{url}/{entry['id']}/checksum", headers=ada).json
    assert checksum == {
        "path": "tables/big.csv",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    folder_sum = client.get(f"{url}/{listing[0]['id']}/checksum", headers=ada)
    assert folder_sum.status_code == 422 and "is a folder" in folder_sum.json["message"]
    assert client.delete(f"{url}/{entry['id']}", headers=ada).status_code == 204
    assert [e["path"] for e in client.get(url, headers=ada).json] == [
        "tables",
        "tables/big (1).csv",
    ]


@pytest.mark.parametrize(
    "path", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "CON", "a\x00b", ""]
)
def test_unsafe_upload_names_are_refused_and_nothing_is_written(
    app, client, ada, tmp_path, path
):
    project = client.post("/api/v1/projects", json={"name": "P"}, headers=ada).json[
        "id"
    ]
    reply = client.put(
        f"/api/v1/projects/{project}/files",
        query_string={"path": path},
        data=b"x",
        headers=ada,
    )
    assert reply.status_code in (400, 422)
    assert reply.json["message"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(ProjectFile.id))) == 0
    assert not list(tmp_path.rglob("escape.txt"))


def test_uploads_count_against_the_quota(app, client, ada):
    app.config["STORAGE_QUOTA_BYTES"] = 1000
    project = client.post("/api/v1/projects", json={"name": "P"}, headers=ada).json[
        "id"
    ]
    reply = client.put(
        f"/api/v1/projects/{project}/files?path=a.bin", data=b"x" * 2000, headers=ada
    )
    assert reply.status_code == 413
    assert "quota" in reply.json["message"]


# --- Pipelines and analyses -----------------------------------------------------------


def test_pipelines_come_with_their_parameter_schema(client, ada):
    listed = client.get("/api/v1/pipelines", headers=ada).json
    writer = next(p for p in listed if p["name"] == "writer")
    assert writer["parameters"]["properties"]["mode"]["enum"] == [
        "file",
        "hidden",
        "stdout",
        "memory",
    ]
    assert writer["ready"] is True and writer["image"] == "labqueue-test/writer:1"
    assert client.get("/api/v1/pipelines/writer", headers=ada).json == writer
    assert client.get("/api/v1/pipelines/nothing", headers=ada).status_code == 404


def test_parameters_get_the_run_forms_messages_per_field(
    app, client, auth, ada, make_project
):
    with app.app_context():
        user = db.session.scalar(db.select(User.id).filter_by(email=ADA))
    project = make_project(user)

    def submit(parameters: dict):
        return client.post(
            "/api/v1/analyses",
            json={
                "project_id": project,
                "pipeline": "writer",
                "parameters": parameters,
            },
            headers=ada,
        )

    refused = submit({"mode": "file", "kib": -1})
    assert refused.status_code == 422
    assert set(refused.json["errors"]["parameters"]) == {"kib"}
    message = refused.json["errors"]["parameters"]["kib"]
    # The web form says the same, on the same field.
    auth.login(ADA)
    page = client.get(f"/projects/{project}/run/writer")
    web = client.post(
        f"/projects/{project}/run/writer",
        data={"p_mode": "file", "p_kib": "-1", "csrf_token": csrf_token(page.text)},
    )
    assert message in web.text
    both = submit({"mode": "loud", "kib": "many", "extra": 1})
    assert set(both.json["errors"]["parameters"]) == {"mode", "kib", "extra"}
    assert "no parameter" in both.json["errors"]["parameters"]["extra"]
    assert "file, hidden, stdout" in both.json["errors"]["parameters"]["mode"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_an_analysis_is_submitted_listed_read_and_cancelled(app, client, ada):
    project = client.post("/api/v1/projects", json={"name": "P"}, headers=ada).json[
        "id"
    ]
    made = client.post(
        "/api/v1/analyses",
        json={
            "project_id": project,
            "pipeline": "writer",
            "parameters": {"mode": "file", "kib": 2},
        },
        headers=ada,
    )
    assert made.status_code == 201
    analysis = made.json
    assert made.headers["Location"].endswith(f"/api/v1/analyses/{analysis['id']}")
    assert analysis["state"] == "queued"
    assert analysis["parameters"] == {"mode": "file", "kib": 2}
    got = client.get(f"/api/v1/analyses/{analysis['id']}", headers=ada).json
    assert got["pipeline"] == "writer" and got["project_id"] == project
    cancelled = client.post(f"/api/v1/analyses/{analysis['id']}/cancel", headers=ada)
    assert cancelled.json == {
        "message": "The analysis was cancelled before it started.",
        "state": "cancelled",
    }
    again = client.post(f"/api/v1/analyses/{analysis['id']}/cancel", headers=ada)
    assert again.status_code == 409 and "already cancelled" in again.json["message"]
    unknown = client.post(
        "/api/v1/analyses",
        json={"project_id": project, "pipeline": "nothing"},
        headers=ada,
    )
    assert unknown.status_code == 404


def test_analyses_are_filtered_and_paginated(app, client, ada, make_project):
    with app.app_context():
        user = db.session.scalar(db.select(User.id).filter_by(email=ADA))
    first, second = make_project(user, "A"), make_project(user, "B")
    ids = [
        make_analysis(app, first, state=AnalysisState.SUCCEEDED, pipeline="writer"),
        make_analysis(app, first, state=AnalysisState.FAILED, pipeline="writer"),
        make_analysis(app, second, state=AnalysisState.SUCCEEDED, pipeline="sleeper"),
    ]
    listing = client.get("/api/v1/analyses?page_size=2", headers=ada).json
    assert (listing["total"], listing["pages"], listing["page"]) == (3, 2, 1)
    assert [a["id"] for a in listing["items"]] == [ids[2], ids[1]]
    rest = client.get("/api/v1/analyses?page_size=2&page=2", headers=ada).json
    assert [a["id"] for a in rest["items"]] == [ids[0]]

    def found(query: str) -> list[int]:
        return [
            a["id"]
            for a in client.get(f"/api/v1/analyses?{query}", headers=ada).json["items"]
        ]

    assert found("state=succeeded") == [ids[2], ids[0]]
    assert found(f"project_id={first}") == [ids[1], ids[0]]
    assert found("pipeline=sleeper") == [ids[2]]
    bad = client.get("/api/v1/analyses?state=lost", headers=ada)
    assert bad.status_code == 422 and "state" in bad.json["errors"]["query"]
    assert client.get("/api/v1/analyses?page_size=1000", headers=ada).status_code == 422


def test_log_and_outputs_are_read(app, client, ada, make_project):
    with app.app_context():
        user = db.session.scalar(db.select(User.id).filter_by(email=ADA))
    analysis_id = make_analysis(
        app, make_project(user), state=AnalysisState.SUCCEEDED, pipeline="writer"
    )
    with app.app_context():
        folder = analysis_dir(db.session.get(Analysis, analysis_id))
    (folder / "output" / "plots").mkdir(parents=True)
    (folder / "output" / "summary.csv").write_text("a,b\n1,2\n")
    (folder / "output" / "plots" / "q.html").write_text("<script>alert(1)</script>")
    (folder / "log.txt").write_text("first line\nsecond line\n")
    url = f"/api/v1/analyses/{analysis_id}"
    log = client.get(f"{url}/log", headers=ada).json
    assert log == {
        "text": "first line\nsecond line\n",
        "offset": 23,
        "state": "succeeded",
        "finished": True,
    }
    assert (
        client.get(f"{url}/log?offset=11", headers=ada).json["text"] == "second line\n"
    )
    assert client.get(f"{url}/log?offset=23", headers=ada).json["text"] == ""
    outputs = client.get(f"{url}/outputs", headers=ada).json
    assert outputs == [
        {"path": "plots/q.html", "size": 25},
        {"path": "summary.csv", "size": 8},
    ]
    with client.get(f"{url}/outputs/plots/q.html", headers=ada) as report:
        assert report.headers["Content-Disposition"].startswith("attachment")
        assert "sandbox" in report.headers["Content-Security-Policy"]
    assert client.get(f"{url}/outputs/../log.txt", headers=ada).status_code == 404
    with client.get(f"{url}/outputs.zip", headers=ada) as zipped:
        bundle = zipfile.ZipFile(io.BytesIO(zipped.data))
    assert sorted(bundle.namelist()) == ["plots/q.html", "summary.csv"]
    assert client.delete(url, headers=ada).status_code == 204
    assert client.get(url, headers=ada).status_code == 404
    assert not folder.exists()


def test_an_unfinished_analysis_is_not_deleted(app, client, ada, make_project):
    with app.app_context():
        user = db.session.scalar(db.select(User.id).filter_by(email=ADA))
    analysis_id = make_analysis(app, make_project(user), state=AnalysisState.RUNNING)
    reply = client.delete(f"/api/v1/analyses/{analysis_id}", headers=ada)
    assert reply.status_code == 409 and "Cancel" in reply.json["message"]


# --- The OpenAPI document -------------------------------------------------------------


def test_the_openapi_document_covers_every_route(app, client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    }
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api_v1."):
            continue
        path = rule.rule.replace("<int:", "{").replace("<path:", "{").replace("<", "{")
        path = path.replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    upload = spec["paths"]["/api/v1/projects/{project_id}/files"]["put"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_docs_page_uses_only_local_assets(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.split("<body>")[1]
    with client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js") as script:
        assert script.status_code == 200


# --- Ownership: every route, from the URL map -----------------------------------------


def api_routes():
    from frontend import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SECURITY_PASSWORD_SALT": "y",
            "SQLALCHEMY_DATABASE_URI": "sqlite://",
        }
    )
    return [
        pytest.param(rule.rule, method, id=f"{method} {rule.rule}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api_v1.")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]


ROUTES = api_routes()
OWNED = [p for p in ROUTES if "_id>" in p.values[0]]


@pytest.fixture
def adas_things(app, client, make_user, make_project, token_for):
    """Ada's project with a file and a finished analysis with an output; tokens
    for Ada and for Bob, who owns nothing of hers."""
    ada = make_user(email=ADA)
    make_user(email=BOB)
    tokens = {"ada": bearer(token_for(ADA)), "bob": bearer(token_for(BOB))}
    project = make_project(ada)
    client.put(
        f"/api/v1/projects/{project}/files?path=data/t.csv",
        data=b"a\n1\n",
        headers=tokens["ada"],
    )
    analysis = make_analysis(
        app, project, state=AnalysisState.SUCCEEDED, pipeline="writer"
    )
    with app.app_context():
        entry = db.session.scalar(
            db.select(ProjectFile.id).filter_by(path="data/t.csv")
        )
        folder = analysis_dir(db.session.get(Analysis, analysis))
    (folder / "output").mkdir(parents=True)
    (folder / "output" / "out.txt").write_text("result")
    (folder / "log.txt").write_text("log")
    # Her group (Carol invited), her project shared with Carol, a link to her
    # analysis, and a batch holding it.
    group = client.post("/api/v1/groups", json={"name": "Lab"}, headers=tokens["ada"])
    group_id = group.json["id"]
    member = client.post(
        f"/api/v1/groups/{group_id}/members",
        json={"email": "carol@cs.ox.ac.uk"},
        headers=tokens["ada"],
    ).json["id"]
    share = client.post(
        f"/api/v1/projects/{project}/shares",
        json={"email": "carol@cs.ox.ac.uk"},
        headers=tokens["ada"],
    ).json["id"]
    link = client.post(
        f"/api/v1/analyses/{analysis}/links", json={}, headers=tokens["ada"]
    ).json["id"]
    with app.app_context():
        batch = Batch(owner_id=ada, project_id=project, pipeline="writer", field="x")
        db.session.add(batch)
        db.session.flush()
        db.session.get(Analysis, analysis).batch_id = batch.id
        db.session.commit()
        batch_id = batch.id
    ids = {
        "project_id": project,
        "entry_id": entry,
        "analysis_id": analysis,
        "group_id": group_id,
        "member_id": member,
        "share_id": share,
        "link_id": link,
        "batch_id": batch_id,
    }
    return {"ids": ids, "tokens": tokens}


def fill(rule: str, ids: dict) -> str:
    url = rule
    for key, value in ids.items():
        url = url.replace(f"<int:{key}>", str(value))
    url = url.replace("<path:relpath>", "out.txt").replace("<name>", "writer")
    assert "<" not in url, f"this test does not know how to fill {rule}"
    return url


def call(client, method: str, url: str, headers: dict, ids: dict):
    """The request a script would send there (valid, but for the ids)."""
    body = {}
    if method == "PUT":
        body = {"data": b"x", "query_string": {"path": "new.txt"}}
    elif url.endswith("/analyses") and method == "POST":
        body = {"json": {"project_id": ids["project_id"], "pipeline": "writer"}}
    elif url.endswith("/add-to-project"):
        body = {"json": {"project_id": ids["project_id"]}}
    elif url.endswith("/members") or url.endswith("/shares"):
        body = {"json": {"email": "dan@cs.ox.ac.uk"}}
    elif url.endswith("/batches"):
        body = {
            "json": {
                "project_id": ids["project_id"],
                "pipeline": "table-profiler",
                "files": ["data/t.csv"],
            }
        }
    elif url.endswith("/links") or url.endswith("/accept") or url.endswith("/leave"):
        body = {"json": {}}
    elif method in ("POST", "PATCH") and not url.endswith("/cancel"):
        body = {"json": {"name": "Taken"}}
    return client.open(url, method=method, headers=headers, **body)


def unchanged(app, ids: dict) -> bool:
    with app.app_context():
        project = db.session.get(Project, ids["project_id"])
        analysis = db.session.get(Analysis, ids["analysis_id"])
        paths = db.session.scalars(db.select(ProjectFile.path)).all()
        count = db.session.scalar(db.select(db.func.count(Analysis.id)))
        members = db.session.scalars(db.select(GroupMember.email)).all()
        shares = db.session.scalars(db.select(ProjectShare.email)).all()
        link = db.session.get(ShareLink, ids["link_id"])
        return (
            project is not None
            and project.name == "RNA-seq"
            and sorted(paths) == ["data", "data/t.csv"]
            and analysis is not None
            and analysis.state == AnalysisState.SUCCEEDED
            and count == 1
            and sorted(members) == [ADA, "carol@cs.ox.ac.uk"]
            and shares == ["carol@cs.ox.ac.uk"]
            and link.revoked_at is None
            and db.session.scalar(db.select(db.func.count(Group.id))) == 1
            and db.session.scalar(db.select(db.func.count(Batch.id))) == 1
        )


@pytest.mark.parametrize(("rule", "method"), ROUTES)
def test_calls_without_a_token_get_401(app, client, adas_things, rule, method):
    ids = adas_things["ids"]
    reply = call(client, method, fill(rule, ids), {}, ids)
    assert reply.status_code == 401
    assert reply.is_json
    assert unchanged(app, ids)


@pytest.mark.parametrize(("rule", "method"), OWNED)
def test_another_users_token_gets_404_and_changes_nothing(
    app, client, adas_things, rule, method
):
    ids = adas_things["ids"]
    reply = call(client, method, fill(rule, ids), adas_things["tokens"]["bob"], ids)
    assert reply.status_code == 404
    assert "t.csv" not in reply.text and "result" not in reply.text
    assert unchanged(app, ids)


@pytest.mark.parametrize(("rule", "method"), OWNED)
def test_missing_ids_get_404(app, client, adas_things, rule, method):
    ids = adas_things["ids"]
    for key in ids:
        if f"<int:{key}>" not in rule:
            continue
        missing = {**ids, key: 987654}
        reply = call(
            client, method, fill(rule, missing), adas_things["tokens"]["ada"], ids
        )
        assert reply.status_code == 404, key
    assert unchanged(app, ids)


def test_another_users_project_cannot_be_run_on_or_listed(app, client, adas_things):
    ids, bob = adas_things["ids"], adas_things["tokens"]["bob"]
    reply = client.post(
        "/api/v1/analyses",
        json={"project_id": ids["project_id"], "pipeline": "writer"},
        headers=bob,
    )
    assert reply.status_code == 404
    assert client.get("/api/v1/projects", headers=bob).json == []
    assert client.get("/api/v1/analyses", headers=bob).json["total"] == 0
    listed = client.get(
        f"/api/v1/analyses?project_id={ids['project_id']}", headers=bob
    ).json
    assert listed["items"] == []
    assert unchanged(app, ids)


def test_a_cluster_run_without_the_users_cluster_account_is_refused(app, client, ada):
    """With jobs submitted as each user's cluster account, a user who has none yet
    is told so (409) and nothing is queued; once an admin sets it, it goes."""
    from frontend.core.models import PipelineSetting, User

    with app.app_context():
        app.config["SLURM_SUBMIT_AS"] = "user"
        db.session.add(PipelineSetting(name="writer", runner="slurm"))
        db.session.commit()
    project = client.post("/api/v1/projects", json={"name": "P"}, headers=ada).json
    body = {
        "project_id": project["id"],
        "pipeline": "writer",
        "parameters": {"mode": "file", "kib": 2},
    }
    refused = client.post("/api/v1/analyses", json=body, headers=ada)
    assert refused.status_code == 409
    assert "none is set for you yet" in refused.json["message"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0
        db.session.scalar(db.select(User)).cluster_account = "ada"
        db.session.commit()
    made = client.post("/api/v1/analyses", json=body, headers=ada)
    assert made.status_code == 201
    with app.app_context():
        assert db.session.get(Analysis, made.json["id"]).runner == "slurm"


def test_times_are_rfc_3339_in_utc(app, client, ada):
    from datetime import UTC, datetime

    made = client.post("/api/v1/projects", json={"name": "Atlas"}, headers=ada).json
    created = made["created_at"]
    assert created.endswith("Z"), created
    when = datetime.fromisoformat(created)
    assert when.tzinfo is not None
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_storage_says_the_quota_and_what_takes_it(app, client, ada, make_project):
    app.config["STORAGE_QUOTA_BYTES"] = 10_000
    made = client.post("/api/v1/projects", json={"name": "Atlas"}, headers=ada).json
    client.put(
        f"/api/v1/projects/{made['id']}/files",
        query_string={"path": "a.csv"},
        data=b"x" * 1234,
        headers={**ada, "Content-Type": "application/octet-stream"},
    )
    assert client.get("/api/v1/storage", headers=ada).json == {
        "quota_bytes": 10_000,
        "used_bytes": 1234,
        "free_bytes": 8766,
        "files_bytes": 1234,
        "outputs_bytes": 0,
        "uploading_bytes": 0,
    }
    assert client.get("/api/v1/storage").status_code == 401
