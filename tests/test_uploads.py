"""Resumable uploads (tus 1.0 with creation, termination and checksum) at
/api/v1/uploads: the protocol, and the web upload's checks on every piece."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from datetime import timedelta

import pytest

from frontend.core.extensions import db
from frontend.core.models import (
    ProjectFile,
    ProjectShare,
    ResumableUpload,
    StorageReservation,
    utcnow,
)
from frontend.projects import resumable
from tests.conftest import Auth, csrf_token

ADA, BOB = "ada@cs.ox.ac.uk", "bob@cs.ox.ac.uk"
TUS = {"Tus-Resumable": "1.0.0"}
PIECE = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def tokens(app, runner, make_user):
    def made(email: str, *options: str) -> dict:
        result = runner.invoke(
            args=[
                "tokens",
                "create",
                "--email",
                email,
                "--name",
                str(options),
                *options,
            ]
        )
        assert result.exit_code == 0, result.output
        return {"Authorization": f"Bearer {result.output.strip()}", **TUS}

    make_user(email=ADA)
    make_user(email=BOB)
    return {"ada": made(ADA), "bob": made(BOB), "reader": made(ADA, "--read-only")}


@pytest.fixture
def project(client, tokens):
    reply = client.post("/api/v1/projects", json={"name": "P"}, headers=tokens["ada"])
    return reply.json["id"]


def metadata(**values: str) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in values.items()
    )


def start(client, headers, project, path="reads/a.fastq", length=10, **more):
    return client.post(
        "/api/v1/uploads",
        headers={
            **headers,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(project=str(project), path=path, **more),
        },
    )


def send(client, headers, location, offset, data, **more):
    return client.patch(
        location,
        headers={**headers, **PIECE, "Upload-Offset": str(offset), **more},
        data=data,
    )


def stored(app) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(
            db.select(ProjectFile.path, ProjectFile.size).filter_by(is_dir=False)
        )
        return sorted(tuple(row) for row in rows)


def held(app) -> int:
    with app.app_context():
        return db.session.scalar(
            db.select(db.func.coalesce(db.func.sum(StorageReservation.bytes), 0))
        )


def test_the_server_says_what_it_speaks(client):
    reply = client.options("/api/v1/uploads")
    assert reply.status_code == 204
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert set(reply.headers["Tus-Extension"].split(",")) == {
        "creation",
        "termination",
        "checksum",
    }
    assert "sha1" in reply.headers["Tus-Checksum-Algorithm"]
    assert int(reply.headers["Tus-Max-Size"]) > 0


def test_a_file_sent_in_pieces_is_stored_when_the_last_arrives(
    app, client, tokens, project
):
    made = start(client, tokens["ada"], project, length=11)
    assert made.status_code == 201
    location = made.headers["Location"]
    assert held(app) == 11  # the whole length is set aside at once
    assert client.head(location, headers=tokens["ada"]).headers["Upload-Offset"] == "0"
    first = send(client, tokens["ada"], location, 0, b"hello ")
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "6"
    assert stored(app) == []
    head = client.head(location, headers=tokens["ada"])
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("6", "11")
    assert head.headers["Cache-Control"] == "no-store"
    last = send(client, tokens["ada"], location, 6, b"world")
    assert last.headers["Upload-Offset"] == "11"
    assert last.headers["Labqueue-Upload-Status"] == "stored"
    assert stored(app) == [("reads/a.fastq", 11)]
    assert held(app) == 0
    assert client.head(location, headers=tokens["ada"]).status_code == 404
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0


def test_a_piece_from_the_wrong_offset_or_with_a_wrong_digest_is_refused(
    app, client, tokens, project
):
    location = start(client, tokens["ada"], project, length=10).headers["Location"]
    send(client, tokens["ada"], location, 0, b"12345")
    behind = send(client, tokens["ada"], location, 0, b"12345")
    assert behind.status_code == 409 and "has 5 bytes" in behind.json["message"]
    wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    refused = send(
        client, tokens["ada"], location, 5, b"67890", Upload_Checksum=f"sha1 {wrong}"
    )
    assert refused.status_code == 460
    assert client.head(location, headers=tokens["ada"]).headers["Upload-Offset"] == "5"
    right = base64.b64encode(hashlib.sha256(b"67890").digest()).decode()
    done = send(
        client, tokens["ada"], location, 5, b"67890", Upload_Checksum=f"sha256 {right}"
    )
    assert done.status_code == 204
    too_much = start(client, tokens["ada"], project, path="b.txt", length=2)
    over = send(client, tokens["ada"], too_much.headers["Location"], 0, b"123")
    assert over.status_code == 400 and "past its 2 bytes" in over.json["message"]
    assert stored(app) == [("reads/a.fastq", 10)]


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"Tus-Resumable": ""}, 412, "Tus-Resumable"),
        ({"Upload-Length": ""}, 400, "Upload-Length"),
        ({"Upload-Defer-Length": "1"}, 400, "Upload-Length"),
        ({"Upload-Metadata": "path !!!"}, 400, "not base64"),
        ({"Upload-Metadata": metadata(path="a.txt")}, 400, "'project'"),
    ],
)
def test_a_creation_without_what_it_needs_is_refused(
    app, client, tokens, project, headers, status, words
):
    base = {
        **tokens["ada"],
        "Upload-Length": "3",
        "Upload-Metadata": metadata(project=str(project), path="a.txt"),
    }
    reply = client.post("/api/v1/uploads", headers={**base, **headers})
    assert reply.status_code == status
    assert words in reply.json["message"]
    assert held(app) == 0


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b", "CON"])
def test_unsafe_names_are_refused_at_creation(app, client, tokens, project, path):
    reply = start(client, tokens["ada"], project, path=path)
    assert reply.status_code == 400
    assert held(app) == 0 and stored(app) == []


def test_the_quota_and_the_size_limit_are_checked_at_creation(
    app, client, tokens, project
):
    app.config.update(STORAGE_QUOTA_BYTES=100, MAX_UPLOAD_BYTES=1000)
    assert start(client, tokens["ada"], project, length=5000).status_code == 413
    first = start(client, tokens["ada"], project, path="a.bin", length=60)
    assert first.status_code == 201
    # Two uploads under way cannot together pass the quota.
    second = start(client, tokens["ada"], project, path="b.bin", length=60)
    assert second.status_code == 413 and "quota" in second.json["message"]


def test_names_that_exist_are_refused_unless_asked(app, client, tokens, project):
    location = start(client, tokens["ada"], project, path="a.txt", length=1)
    send(client, tokens["ada"], location.headers["Location"], 0, b"1")
    clash = start(client, tokens["ada"], project, path="a.txt", length=1)
    assert clash.status_code == 409
    kept = start(
        client, tokens["ada"], project, path="a.txt", length=2, on_clash="keep"
    )
    done = send(client, tokens["ada"], kept.headers["Location"], 0, b"22")
    assert done.headers["Labqueue-Upload-Path"] == "a%20%281%29.txt"
    assert stored(app) == [("a (1).txt", 2), ("a.txt", 1)]


def test_another_user_cannot_see_resume_or_end_an_upload(app, client, tokens, project):
    location = start(client, tokens["ada"], project, length=4).headers["Location"]
    bob = tokens["bob"]
    assert client.head(location, headers=bob).status_code == 404
    assert send(client, bob, location, 0, b"1234").status_code == 404
    assert client.delete(location, headers=bob).status_code == 404
    assert start(client, bob, project).status_code == 404  # her project
    assert client.head(location, headers=tokens["ada"]).headers["Upload-Offset"] == "0"
    reader = tokens["reader"]
    assert start(client, reader, project).status_code == 403
    assert send(client, reader, location, 0, b"1234").status_code == 403
    assert client.head(location, headers={**TUS}).status_code == 401


def test_an_upload_ended_or_abandoned_leaves_nothing(app, client, tokens, project):
    first = start(client, tokens["ada"], project, path="a.bin", length=10)
    send(client, tokens["ada"], first.headers["Location"], 0, b"12345")
    ended = client.delete(first.headers["Location"], headers=tokens["ada"])
    assert ended.status_code == 204
    second = start(client, tokens["ada"], project, path="b.bin", length=10)
    send(client, tokens["ada"], second.headers["Location"], 0, b"123")
    with app.app_context():
        row = db.session.scalar(db.select(ResumableUpload))
        staged = resumable.upload_path(row)
        assert staged.stat().st_size == 3
        row.touched_at = utcnow() - timedelta(hours=25)
        db.session.commit()
        assert resumable.expire() == 1
        assert not staged.exists()
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0
    assert held(app) == 0 and stored(app) == []
    assert (
        client.head(second.headers["Location"], headers=tokens["ada"]).status_code
        == 404
    )


def test_pieces_do_not_count_as_writes(app, client, tokens, project):
    app.config["API_WRITES_PER_MINUTE"] = 3
    location = start(client, tokens["ada"], project, length=6).headers["Location"]
    for offset in range(6):
        reply = send(client, tokens["ada"], location, offset, b"x")
        assert reply.status_code == 204
    assert stored(app) == [("reads/a.fastq", 6)]


def test_deleting_the_project_ends_its_uploads_and_frees_their_quota(
    app, client, tokens, project
):
    made = start(client, tokens["ada"], project, path="big.bin", length=10_000)
    send(client, tokens["ada"], made.headers["Location"], 0, b"12345")
    assert held(app) == 10_000
    gone = client.delete(f"/api/v1/projects/{project}", headers=tokens["ada"])
    assert gone.status_code == 204
    assert held(app) == 0
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0
    assert (
        client.head(made.headers["Location"], headers=tokens["ada"]).status_code == 404
    )


def _share(client, project: int, email: str, access: str) -> None:
    """Ada shares her project with ``email`` through the sharing page."""
    Auth(client).login(ADA)
    page = client.get(f"/projects/{project}/sharing").text
    reply = client.post(
        f"/projects/{project}/sharing",
        data={"csrf_token": csrf_token(page), "email": email, "access": access},
    )
    assert reply.status_code == 302, reply.text
    Auth(client).logout()


def _unshare(app, client, project: int) -> None:
    Auth(client).login(ADA)
    with app.app_context():
        share = db.session.scalar(db.select(ProjectShare.id))
    page = client.get(f"/projects/{project}/sharing").text
    client.post(
        f"/projects/{project}/sharing/{share}/remove",
        data={"csrf_token": csrf_token(page)},
    )
    Auth(client).logout()


@pytest.mark.parametrize("way", ["api", "web"])
def test_a_collaborator_whose_share_is_removed_cannot_go_on_uploading(
    app, client, tokens, project, way
):
    """Bob (read-write) starts replacing Ada's file; she removes his share: his
    next piece is refused, the upload is gone with what it held, her file stays."""
    whole = start(client, tokens["ada"], project, path="data.csv", length=6)
    send(client, tokens["ada"], whole.headers["Location"], 0, b"ada's\n")
    _share(client, project, BOB, "write")
    if way == "api":
        bob, base = tokens["bob"], "/api/v1/uploads"
    else:  # the project page's uploads: his session, CSRF token in a header
        Auth(client).login(BOB)
        page = client.get(f"/projects/{project}").text
        bob, base = {**TUS, "X-CSRFToken": csrf_token(page)}, "/uploads"
    made = client.post(
        base,
        headers={
            **bob,
            "Upload-Length": "8",
            "Upload-Metadata": metadata(
                project=str(project), path="data.csv", on_clash="replace"
            ),
        },
    )
    assert made.status_code == 201, made.text
    location = made.headers["Location"]
    assert send(client, bob, location, 0, b"bob'").status_code == 204
    if way == "web":
        Auth(client).logout()
    _unshare(app, client, project)
    if way == "web":
        Auth(client).login(BOB)
        page = client.get("/projects/").text  # a new session, a new token
        bob = {**TUS, "X-CSRFToken": csrf_token(page)}
    assert send(client, bob, location, 4, b"s!!\n").status_code == 404
    assert client.head(location, headers=bob).status_code == 404
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(ResumableUpload.id))) == 0
    assert held(app) == 0 and stored(app) == [("data.csv", 6)]
    page = client.get(f"/api/v1/projects/{project}/files", headers=tokens["ada"]).json
    entry = next(item for item in page if item["path"] == "data.csv")
    with client.get(
        f"/api/v1/projects/{project}/files/{entry['id']}/content",
        headers=tokens["ada"],
    ) as content:
        assert content.data == b"ada's\n"


def test_access_is_checked_again_when_the_last_byte_arrives(
    app, client, tokens, project
):
    """A share removed while the last piece is on its way: nothing is stored."""
    _share(client, project, BOB, "write")
    made = start(client, tokens["bob"], project, path="late.csv", length=4)
    with app.app_context():
        upload = db.session.scalar(db.select(ResumableUpload))
        db.session.execute(db.delete(ProjectShare))
        db.session.commit()
        with pytest.raises(resumable.Gone):
            resumable.append(upload, io.BytesIO(b"1234"), 0, 4)
    assert made.status_code == 201 and stored(app) == [] and held(app) == 0


def test_one_upload_is_written_by_one_request_at_a_time(app, tokens, project):
    """Pieces of one upload sent in parallel: the one being written holds it, the
    others are told to wait (409); never a 500, and the file is stored once."""
    import threading

    import requests

    from tests.conftest import LiveServer

    data = bytes(range(256)) * 4096  # 1 MiB
    with LiveServer(app) as live:
        ada = tokens["ada"]
        made = requests.post(
            f"{live.url}/api/v1/uploads",
            headers={
                **ada,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(project=str(project), path="one.bin"),
            },
            timeout=30,
        )
        location = live.url + made.headers["Location"]

        def slowly():  # holds the upload while the others arrive
            for start_at in range(0, len(data), 64 * 1024):
                time.sleep(0.1)
                yield data[start_at : start_at + 64 * 1024]

        answers: list[int] = []

        def piece(body) -> None:
            reply = requests.patch(
                location,
                headers={**ada, **PIECE, "Upload-Offset": "0"},
                data=body,
                timeout=60,
            )
            answers.append(reply.status_code)

        first = threading.Thread(target=piece, args=(slowly(),))
        first.start()
        time.sleep(0.4)
        others = [threading.Thread(target=piece, args=(data,)) for _ in range(8)]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(timeout=60)
    assert sorted(answers) == [204] + [409] * 8, answers
    assert stored(app) == [("one.bin", len(data))] and held(app) == 0
