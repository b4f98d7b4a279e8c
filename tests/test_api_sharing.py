"""The API for working together and for batches, with the web's rules: groups
and invitations, a project's shares, links to an analysis, and batches, each
tried by the owner, a member with read-only and with read-write access, an
outsider, and with a read-only token."""

from __future__ import annotations

import io
import zipfile

import pytest
import requests

from frontend.core.extensions import db
from frontend.core.models import Analysis, AnalysisState, OutgoingMail
from tests.conftest import LiveServer, make_analysis
from tests.test_api import ADA, bearer, token_for  # noqa: F401 (a fixture)

CAROL, DAN = "carol@cs.ox.ac.uk", "dan@cs.ox.ac.uk"


@pytest.fixture
def people(make_user, token_for):  # noqa: F811
    """Tokens for Ada (who owns what is shared), Carol (her lab mate) and Dan
    (nobody to them)."""
    for email in (ADA, CAROL, DAN):
        make_user(email=email)
    return {
        name: bearer(token_for(email))
        for name, email in (("ada", ADA), ("carol", CAROL), ("dan", DAN))
    }


def mails_to(app, address: str) -> list[OutgoingMail]:
    with app.app_context():
        return db.session.scalars(
            db.select(OutgoingMail).filter_by(recipient=address)
        ).all()


def test_a_group_is_made_joined_and_left_through_the_api(app, client, people):
    ada, carol, dan = people["ada"], people["carol"], people["dan"]
    made = client.post("/api/v1/groups", json={"name": "  Smith   lab "}, headers=ada)
    assert made.status_code == 201, made.json
    group = made.json
    assert (group["name"], group["role"], group["owner"]) == ("Smith lab", "owner", ADA)
    assert made.headers["Location"].endswith(f"/api/v1/groups/{group['id']}")
    url = f"/api/v1/groups/{group['id']}"

    invited = client.post(
        f"{url}/members", json={"email": "Carol@CS.ox.ac.uk"}, headers=ada
    )
    assert invited.status_code == 201 and invited.json["email"] == CAROL
    assert len(mails_to(app, CAROL)) == 1
    again = client.post(f"{url}/members", json={"email": CAROL}, headers=ada)
    assert again.status_code == 422 and "already invited" in again.json["message"]
    bad = client.post(f"{url}/members", json={"email": "not an address"}, headers=ada)
    assert bad.status_code == 422 and "email" in bad.json["errors"]["json"]

    # Carol sees the invitation, not yet who is in the group.
    (listed,) = client.get("/api/v1/groups", headers=carol).json
    assert (listed["role"], listed["members"]) == ("invited", [])
    # Dan sees nothing of it.
    assert client.get("/api/v1/groups", headers=dan).json == []
    assert client.get(url, headers=dan).status_code == 404
    assert client.post(f"{url}/accept", headers=dan).status_code == 404

    joined = client.post(f"{url}/accept", headers=carol)
    assert joined.status_code == 200 and joined.json["role"] == "member"
    assert [(m["email"], m["joined"]) for m in joined.json["members"]] == [
        (ADA, True),
        (CAROL, True),
    ]
    # A member may not manage the group.
    refused = client.post(f"{url}/members", json={"email": DAN}, headers=carol)
    assert refused.status_code == 403
    assert client.delete(url, headers=carol).status_code == 403
    # The owner stays; a member leaves.
    owner_leaves = client.post(f"{url}/leave", headers=ada)
    assert (
        owner_leaves.status_code == 422
        and "owner stays" in owner_leaves.json["message"]
    )
    assert client.post(f"{url}/leave", headers=carol).status_code == 204
    assert client.get(url, headers=carol).status_code == 404
    assert client.delete(url, headers=ada).status_code == 204
    assert client.get("/api/v1/groups", headers=ada).json == []


def test_a_project_is_shared_read_only_then_read_write_then_not(app, client, people):
    ada, carol, dan = people["ada"], people["carol"], people["dan"]
    project = client.post("/api/v1/projects", json={"name": "Plates"}, headers=ada)
    project_id = project.json["id"]
    shares = f"/api/v1/projects/{project_id}/shares"
    files = f"/api/v1/projects/{project_id}/files"

    made = client.post(shares, json={"email": CAROL}, headers=ada)
    assert made.status_code == 201, made.json
    assert (made.json["email"], made.json["access"]) == (CAROL, "read-only")
    assert len(mails_to(app, CAROL)) == 1
    (seen,) = client.get("/api/v1/projects?shared=1", headers=carol).json
    assert (seen["id"], seen["role"]) == (project_id, "read-only")
    refused = client.put(f"{files}?path=a.csv", data=b"x", headers=carol)
    assert refused.status_code == 403
    # Only the owner sees and changes the shares.
    assert client.get(shares, headers=carol).status_code == 403
    assert client.get(shares, headers=dan).status_code == 404
    assert client.post(shares, json={"email": DAN}, headers=carol).status_code == 403

    # Shared again with the same person: the access changes, no second share.
    client.post(shares, json={"email": CAROL, "access": "read-write"}, headers=ada)
    (listed,) = client.get(shares, headers=ada).json
    assert listed["access"] == "read-write"
    assert (
        client.put(f"{files}?path=a.csv", data=b"x", headers=carol).status_code == 201
    )
    assert len(mails_to(app, CAROL)) == 1  # one mail for the first share only

    for body, words in [
        ({}, "Give an email or a group_id"),
        ({"email": CAROL, "group_id": 1}, "Give an email or a group_id"),
        ({"email": ADA}, "The project is yours already."),
        ({"email": CAROL, "access": "owner"}, None),
    ]:
        reply = client.post(shares, json=body, headers=ada)
        assert reply.status_code == 422, (body, reply.json)
        assert words is None or words in reply.json["message"]

    assert client.delete(f"{shares}/{listed['id']}", headers=ada).status_code == 204
    assert (
        client.get(f"/api/v1/projects/{project_id}", headers=carol).status_code == 404
    )


def test_a_project_is_shared_with_a_group_its_owner_has_joined(app, client, people):
    ada, carol = people["ada"], people["carol"]
    project_id = client.post(
        "/api/v1/projects", json={"name": "Plates"}, headers=ada
    ).json["id"]
    group = client.post("/api/v1/groups", json={"name": "Lab"}, headers=carol).json
    shares = f"/api/v1/projects/{project_id}/shares"
    # Ada is not in Carol's group: it is nothing to her.
    not_hers = client.post(shares, json={"group_id": group["id"]}, headers=ada)
    assert not_hers.status_code == 404
    client.post(
        f"/api/v1/groups/{group['id']}/members", json={"email": ADA}, headers=carol
    )
    invited_only = client.post(shares, json={"group_id": group["id"]}, headers=ada)
    assert invited_only.status_code == 422
    assert "Join the group" in invited_only.json["message"]
    client.post(f"/api/v1/groups/{group['id']}/accept", headers=ada)
    made = client.post(shares, json={"group_id": group["id"]}, headers=ada)
    assert made.status_code == 201 and made.json["group"] == "Lab"
    (seen,) = client.get("/api/v1/projects", headers=carol).json
    assert (seen["id"], seen["role"]) == (project_id, "read-only")


def test_a_link_opens_an_analysis_until_it_is_revoked(app, client, people):
    ada, carol = people["ada"], people["carol"]
    project_id = client.post(
        "/api/v1/projects", json={"name": "Plates"}, headers=ada
    ).json["id"]
    client.post(
        f"/api/v1/projects/{project_id}/shares", json={"email": CAROL}, headers=ada
    )
    analysis = make_analysis(app, project_id, state=AnalysisState.SUCCEEDED)
    links = f"/api/v1/analyses/{analysis}/links"

    made = client.post(links, json={"days": 3}, headers=ada)
    assert made.status_code == 201, made.json
    assert made.headers["Cache-Control"] == "no-store"
    link = made.json
    assert link["works"].startswith("until ") and link["expires_at"].endswith("Z")
    path = link["url"].split("://", 1)[1].split("/", 1)[1]
    assert client.get(f"/{path}").status_code == 200  # anyone, no token
    (listed,) = client.get(links, headers=ada).json
    assert listed["id"] == link["id"] and "url" not in listed  # shown once
    # A read-only member may see the analysis, not share it.
    assert client.post(links, json={}, headers=carol).status_code == 403
    too_long = client.post(links, json={"days": 9999}, headers=ada)
    assert too_long.status_code == 422 and "1 to" in too_long.json["message"]

    assert client.delete(f"/api/v1/links/{link['id']}", headers=ada).status_code == 204
    assert client.get(f"/{path}").status_code == 404
    (listed,) = client.get(links, headers=ada).json
    assert listed["works"] == "revoked"


@pytest.fixture
def tables(client, people):
    """Ada's project with three tables and a text file."""
    ada = people["ada"]
    project_id = client.post(
        "/api/v1/projects", json={"name": "Tables"}, headers=ada
    ).json["id"]
    for path in ("data/a.csv", "data/b.csv", "other/c.csv", "data/notes.txt"):
        client.put(
            f"/api/v1/projects/{project_id}/files?path={path}",
            data=b"x,y\n1,2\n",
            headers=ada,
        )
    return project_id


def test_a_batch_is_submitted_followed_cancelled_and_zipped(
    app, client, people, tables
):
    ada = people["ada"]
    made = client.post(
        "/api/v1/batches",
        json={
            "project_id": tables,
            "pipeline": "table-profiler",
            "pattern": "data/*",
            "parameters": {"bins": 12},
        },
        headers=ada,
    )
    assert made.status_code == 201, made.json
    batch = made.json
    # The pattern matched the tables the pipeline takes, not the text file.
    assert [row["input"] for row in batch["analyses"]] == ["data/a.csv", "data/b.csv"]
    assert batch["counts"]["queued"] == 2 and batch["field"] == "tables"
    with app.app_context():
        params = db.session.scalars(
            db.select(Analysis.params).order_by(Analysis.id)
        ).all()
    assert [p["tables"] for p in params] == [["data/a.csv"], ["data/b.csv"]]
    assert all(p["bins"] == 12 for p in params)

    url = f"/api/v1/batches/{batch['id']}"
    assert client.get(url, headers=ada).json["id"] == batch["id"]
    (listed,) = client.get("/api/v1/batches", headers=ada).json
    assert (listed["id"], listed["counts"]["queued"]) == (batch["id"], 2)
    mine = client.get(f"/api/v1/batches?project_id={tables}", headers=ada).json
    assert [b["id"] for b in mine] == [batch["id"]]
    assert client.get("/api/v1/batches?project_id=999", headers=ada).json == []
    assert client.get("/api/v1/batches", headers=people["dan"]).json == []
    assert client.get(url, headers=people["dan"]).status_code == 404
    cancelled = client.post(f"{url}/cancel", headers=ada)
    assert cancelled.status_code == 200 and "2 queued" in cancelled.json["message"]
    assert client.get(url, headers=ada).json["counts"]["cancelled"] == 2
    assert client.post(f"{url}/cancel", headers=ada).status_code == 409
    with client.get(f"{url}/outputs.zip", headers=ada) as zipped:
        assert zipped.status_code == 200
        assert zipfile.ZipFile(io.BytesIO(zipped.data)).namelist() == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"files": ["data/a.csv"], "pattern": "*"}, 422, "one of the two"),
        ({}, 422, "one of the two"),
        ({"pattern": "*.fastq"}, 422, "No file of the project matches"),
        ({"files": ["data/zz.csv"]}, 422, "not valid"),
        ({"files": []}, 422, "No file was chosen"),
        ({"files": ["data/a.csv"], "pipeline": "nope"}, 404, "nope"),
        ({"files": ["data/a.csv"], "parameters": {"bins": "x"}}, 422, "not valid"),
    ],
)
def test_a_batch_that_cannot_run_says_why_and_queues_nothing(
    app, client, people, tables, body, status, words
):
    body = {"project_id": tables, "pipeline": "table-profiler", **body}
    reply = client.post("/api/v1/batches", json=body, headers=people["ada"])
    assert reply.status_code == status, reply.json
    assert words in reply.json["message"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(Analysis.id))) == 0


def test_batches_and_shares_follow_the_project_role_and_token_scope(
    app,
    client,
    people,
    tables,
    token_for,  # noqa: F811
):
    ada, carol = people["ada"], people["carol"]
    body = {"project_id": tables, "pipeline": "table-profiler", "files": ["data/a.csv"]}
    client.post(f"/api/v1/projects/{tables}/shares", json={"email": CAROL}, headers=ada)
    assert client.post("/api/v1/batches", json=body, headers=carol).status_code == 403
    client.post(
        f"/api/v1/projects/{tables}/shares",
        json={"email": CAROL, "access": "read-write"},
        headers=ada,
    )
    assert client.post("/api/v1/batches", json=body, headers=carol).status_code == 201
    reader = bearer(token_for(ADA, "--read-only", "--name", "reader"))
    for method, url in [
        ("POST", "/api/v1/batches"),
        ("POST", "/api/v1/groups"),
        ("POST", f"/api/v1/projects/{tables}/shares"),
    ]:
        reply = client.open(url, method=method, json={"name": "x"}, headers=reader)
        assert reply.status_code == 403, url
    assert client.get(f"/api/v1/projects/{tables}/shares", headers=reader).json


def test_the_cli_shares_links_and_runs_batches(app, client, people, tables, tmp_path):
    """`labqueue share`, `labqueue link` and `labqueue batch` against a live
    server."""
    from tests.test_client import finish, labqueue

    token = people["ada"]["Authorization"].split()[1]
    with LiveServer(app) as live:
        env = {"LABQUEUE_URL": live.url, "LABQUEUE_TOKEN": token}

        def cli(*args: str) -> tuple[int, str]:
            return finish(labqueue(tmp_path, *args, environment=env))

        code, out = cli("share", "Tables", CAROL, "--write")
        assert code == 0 and f"“Tables” is shared with {CAROL} (read-write)." in out
        code, out = cli("shares", "Tables")
        assert code == 0 and f"{CAROL}  read-write" in out, out
        code, out = cli("unshare", "Tables", CAROL)
        assert code == 0 and "no longer shared" in out, out
        code, out = cli("unshare", "Tables", CAROL)
        assert code == 1 and "is not shared with" in out, out

        code, out = cli(
            "batch",
            "Tables",
            "table-profiler",
            "--files",
            "data/*.csv",
            "--param",
            "bins=12",
        )
        assert code == 0, out
        assert "Batch #" in out and "2 analyses queued: data/a.csv, data/b.csv" in out
        batch = int(out.split("Batch #", 1)[1].split(":")[0])
        code, out = cli("batch-status", str(batch))
        assert code == 0 and "queued 2" in out and "data/b.csv" in out, out
        code, out = cli("batch-cancel", str(batch))
        assert code == 0 and "2 queued analysis(es) cancelled" in out, out

        with app.app_context():
            analysis = db.session.scalar(db.select(Analysis.id))
        code, out = cli("link", str(analysis), "--days", "2")
        assert code == 0 and "/s/lqs_" in out, out
        address = next(w for w in out.split() if "/s/lqs_" in w)
        assert requests.get(address, timeout=10).status_code == 200
        code, out = cli("link", str(analysis), "--days", "999")
        assert code == 1 and "1 to" in out and "Traceback" not in out, out
