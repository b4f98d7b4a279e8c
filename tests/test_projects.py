"""Projects and files over HTTP: what users can do, and what they cannot."""

import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.models import ProjectFile
from tests.conftest import csrf_token, upload


@pytest.fixture
def owner(make_user, auth):
    user_id = make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    return user_id


@pytest.fixture
def project(owner, make_project):
    return make_project(owner)


def files_root(app, owner, project) -> Path:
    return Path(app.config["USER_DATA_DIR"]) / str(owner) / str(project) / "files"


def disk_tree(app, owner, project) -> list[str]:
    root = files_root(app, owner, project)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def staging_leftovers(app, owner, project) -> list[Path]:
    staging = files_root(app, owner, project).parent / ".staging"
    return list(staging.iterdir()) if staging.exists() else []


def entry_id(app, project, path) -> int:
    with app.app_context():
        return db.session.scalar(
            db.select(ProjectFile.id).filter_by(project_id=project, path=path)
        )


def fetch(client, url):
    """GET a file response, read it, and close the file behind it."""
    response = client.get(url)
    response.get_data()
    response.close()
    return response


def post_form(client, url, page, **data):
    return client.post(
        url, data={**data, "csrf_token": csrf_token(client.get(page).text)}
    )


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- Projects -----------------------------------------------------------------------


def test_create_and_list_projects_with_counts(client, owner, app):
    response = post_form(
        client, "/projects/new", "/projects/new", name="Mouse liver", description="x"
    )
    project = int(response.headers["Location"].rsplit("/", 1)[1])
    upload(client, project, "a.csv", b"1,2\n")
    upload(client, project, "b/c.csv", b"3,4,5\n")
    page = client.get("/projects/").text
    assert "Mouse liver" in page
    row = page.split("Mouse liver")[1].split("</tr>")[0]
    assert ">2<" in row and "10 B" in row
    assert re.search(r">\s*0\s*</a>", row)  # analyses, none yet


def test_project_names_are_unique_per_user(client, owner, project):
    response = post_form(client, "/projects/new", "/projects/new", name="RNA-seq")
    assert "You already have a project called “RNA-seq”" in response.text


def test_a_project_whose_folder_cannot_be_made_is_not_kept(client, app, owner):
    # Where the owner's folder should be, something else is (as a volume the
    # engine made for another user would be): the server cannot write there.
    blocker = Path(app.config["USER_DATA_DIR"]) / str(owner)
    blocker.write_text("not a folder")
    response = post_form(client, "/projects/new", "/projects/new", name="RNA-seq")
    assert response.status_code == 200
    assert "the server cannot write its folder" in response.text
    assert "RNA-seq" not in client.get("/projects/").text
    # Once the folder can be made, the same name is free: nothing was kept.
    blocker.unlink()
    again = post_form(client, "/projects/new", "/projects/new", name="RNA-seq")
    assert again.status_code == 302
    project = int(again.headers["Location"].rsplit("/", 1)[1])
    assert files_root(app, owner, project).is_dir()


def test_two_users_may_use_the_same_name(client, auth, make_user, project):
    make_user(email="bob@cs.ox.ac.uk")
    auth.logout()
    auth.login("bob@cs.ox.ac.uk")
    response = post_form(client, "/projects/new", "/projects/new", name="RNA-seq")
    assert response.status_code == 302


def test_rename_project(client, project):
    page = f"/projects/{project}/settings"
    post_form(client, page, page, name="Renamed", description="new words")
    assert "Renamed" in client.get(f"/projects/{project}").text


def test_delete_asks_first_naming_what_goes_then_deletes(client, app, owner, project):
    upload(client, project, "big.bin", b"x" * 2048)
    confirm = client.get(f"/projects/{project}/delete").text
    assert "1 file(s), 2.0 KiB in all" in confirm
    assert "the results of every analysis run on it" in confirm
    post_form(client, f"/projects/{project}/delete", f"/projects/{project}/delete")
    assert client.get(f"/projects/{project}").status_code == 404
    assert not files_root(app, owner, project).parent.exists()


# --- Upload -------------------------------------------------------------------------


def test_upload_keeps_unicode_names_and_serves_them_back(client, app, owner, project):
    response = upload(client, project, "données/échantillon 1.csv", b"a,b\n1,2\n")
    assert response.json["status"] == "stored"
    assert disk_tree(app, owner, project) == ["données", "données/échantillon 1.csv"]
    file_id = entry_id(app, project, "données/échantillon 1.csv")
    download = fetch(client, f"/projects/{project}/entries/{file_id}/download")
    assert download.data == b"a,b\n1,2\n"
    assert (
        "filename*=UTF-8''%C3%A9chantillon%201.csv"
        in download.headers["Content-Disposition"]
    )
    assert download.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../x", "goes outside"),
        ("/etc/passwd", "absolute path"),
        ("a/../../b", "goes outside"),
        ("con", "reserved device name"),
        ("", "cannot be empty"),
        ("x" * 300, "too long"),
        ("nul\x00byte.txt", "control characters"),
        ("a\\b", "backslash"),
    ],
)
def test_unsafe_upload_names_are_refused_and_store_nothing(
    client, app, owner, project, name, message
):
    response = upload(client, project, name, b"data")
    assert response.status_code == 400
    assert message in response.json["message"]
    assert disk_tree(app, owner, project) == []
    assert staging_leftovers(app, owner, project) == []


def test_over_quota_upload_says_by_how_much_and_stores_nothing(
    client, app, owner, project
):
    with app.app_context():
        from frontend.core.models import User

        db.session.get(User, owner).storage_quota = 1000
        db.session.commit()
    upload(client, project, "first.bin", b"x" * 600)
    response = upload(client, project, "second.bin", b"y" * 600)
    assert response.status_code == 413
    assert "over by 200 B" in response.json["message"]
    assert disk_tree(app, owner, project) == ["first.bin"]


def test_upload_larger_than_the_request_limit_is_refused(client, app, owner, project):
    app.config["MAX_UPLOAD_BYTES"] = 1024
    response = upload(client, project, "big.bin", b"z" * 2048)
    assert response.status_code == 413
    assert "The limit is 1.0 KiB per request" in response.json["message"]
    assert disk_tree(app, owner, project) == []


def test_file_count_limit(client, app, owner, project):
    app.config["MAX_FILES_PER_PROJECT"] = 2
    upload(client, project, "1.txt", b"1")
    upload(client, project, "2.txt", b"2")
    response = upload(client, project, "3.txt", b"3")
    assert response.status_code == 413
    assert "A project can hold 2 files" in response.json["message"]


def test_interrupted_upload_leaves_nothing(client, app, owner, project):
    token = csrf_token(client.get(f"/projects/{project}").text)
    response = client.post(
        f"/projects/{project}/upload",
        query_string={"path": "cut.bin"},
        input_stream=io.BytesIO(b"only part"),
        headers={
            "X-CSRFToken": token,
            "Accept": "application/json",
            "Content-Type": "application/octet-stream",
        },
        environ_overrides={"CONTENT_LENGTH": "1000000"},
    )
    assert response.status_code == 400
    assert "The upload stopped" in response.json["message"]
    assert disk_tree(app, owner, project) == []
    assert staging_leftovers(app, owner, project) == []


@pytest.mark.parametrize(
    ("policy", "status", "tree", "content"),
    [
        ("ask", 409, ["a.txt"], b"old"),
        ("replace", 200, ["a.txt"], b"new"),
        ("keep", 200, ["a (1).txt", "a.txt"], b"old"),
        ("skip", 200, ["a.txt"], b"old"),
    ],
)
def test_name_clash_policies(
    client, app, owner, project, policy, status, tree, content
):
    upload(client, project, "a.txt", b"old")
    response = upload(client, project, "a.txt", b"new", on_clash=policy)
    assert response.status_code == status
    assert disk_tree(app, owner, project) == tree
    assert (files_root(app, owner, project) / "a.txt").read_bytes() == content


def test_clash_check_lists_existing_names(client, project):
    upload(client, project, "a.txt", b"1")
    upload(client, project, "data/x.csv", b"1")
    token = csrf_token(client.get(f"/projects/{project}").text)
    response = client.post(
        f"/projects/{project}/upload/check",
        json={"paths": ["a.txt", "b.txt", "data.zip"], "extract": True},
        headers={"X-CSRFToken": token},
    )
    assert set(response.json["existing"]) == {"a.txt", "data.zip"}


# --- Archives -----------------------------------------------------------------------


def test_zip_is_extracted_into_a_folder_without_mac_metadata(
    client, app, owner, project
):
    archive = zip_bytes(
        {"reads/r1.fq": b"@r\nAC\n+\nII\n", "__MACOSX/._r1.fq": b"", "notes.txt": b"hi"}
    )
    response = upload(client, project, "run 7.zip", archive, extract="1")
    assert response.json["status"] == "extracted"
    assert "Extracted 2 files" in response.json["message"]
    assert disk_tree(app, owner, project) == [
        "run 7",
        "run 7/notes.txt",
        "run 7/reads",
        "run 7/reads/r1.fq",
    ]


def test_without_extract_an_archive_is_stored_as_is(client, app, owner, project):
    upload(client, project, "run.zip", zip_bytes({"a.txt": b"x"}))
    assert disk_tree(app, owner, project) == ["run.zip"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"ok.txt": b"x", "../../evil.sh": b"x"}, "“../../evil.sh”: paths with .."),
        ({"/etc/cron.d/x": b"x"}, "absolute paths"),
        ({f"f{n}": b"" for n in range(10_001)}, "more than 10,000 entries"),
    ],
)
def test_rejected_archives_name_the_rule_and_change_nothing(
    client, app, owner, project, entries, message
):
    response = upload(client, project, "bad.zip", zip_bytes(entries), extract="1")
    assert response.status_code == 400
    assert message in response.json["message"]
    assert disk_tree(app, owner, project) == []
    assert staging_leftovers(app, owner, project) == []


def test_zip_bomb_is_refused(client, app, owner, project):
    response = upload(
        client,
        project,
        "bomb.zip",
        zip_bytes({"z": bytes(300 * 1024 * 1024)}),
        extract="1",
    )
    assert "zip bomb" in response.json["message"]
    assert disk_tree(app, owner, project) == []


def test_archive_over_the_space_left_is_refused(client, app, owner, project):
    with app.app_context():
        from frontend.core.models import User

        db.session.get(User, owner).storage_quota = 50_000
        db.session.commit()
    archive = zip_bytes({"a.txt": b"a" * 40_000, "b.txt": b"b" * 40_000})
    response = upload(client, project, "two.zip", archive, extract="1")
    assert "more than the space you have left" in response.json["message"]
    assert disk_tree(app, owner, project) == []


def test_extracting_again_can_replace_the_folder(client, app, owner, project):
    upload(client, project, "d.zip", zip_bytes({"old.txt": b"1"}), extract="1")
    upload(
        client,
        project,
        "d.zip",
        zip_bytes({"new.txt": b"2"}),
        extract="1",
        on_clash="replace",
    )
    assert disk_tree(app, owner, project) == ["d", "d/new.txt"]


# --- Browse, preview, rename, delete ------------------------------------------------


def test_browse_sorts_and_shows_breadcrumbs(client, app, project):
    upload(client, project, "top/small.txt", b"1")
    upload(client, project, "top/large.txt", b"1" * 5000)
    folder = entry_id(app, project, "top")
    page = client.get(f"/projects/{project}?folder={folder}&sort=size&desc=1").text
    assert page.index("large.txt") < page.index("small.txt")
    assert 'aria-current="page">top<' in page
    page = client.get(f"/projects/{project}?folder={folder}&sort=name").text
    assert page.index("large.txt") < page.index("small.txt")


def test_make_folder_and_refuse_bad_names(client, app, owner, project):
    browse = f"/projects/{project}"
    post_form(client, f"/projects/{project}/folders", browse, name="raw data")
    response = post_form(client, f"/projects/{project}/folders", browse, name="..")
    assert disk_tree(app, owner, project) == ["raw data"]
    assert response.status_code == 302
    assert "No folder was created" in client.get(browse).text


def test_rename_folder_moves_its_contents(client, app, owner, project):
    upload(client, project, "old/inner/file.txt", b"keep me")
    folder = entry_id(app, project, "old")
    post_form(
        client,
        f"/projects/{project}/entries/{folder}/rename",
        f"/projects/{project}",
        name="new name",
    )
    assert disk_tree(app, owner, project) == [
        "new name",
        "new name/inner",
        "new name/inner/file.txt",
    ]
    moved = entry_id(app, project, "new name/inner/file.txt")
    download = fetch(client, f"/projects/{project}/entries/{moved}/download")
    assert download.data == b"keep me"


@pytest.mark.parametrize("bad", ["../escape", "a/b", "con", "x" * 300])
def test_rename_to_unsafe_names_changes_nothing(client, app, owner, project, bad):
    upload(client, project, "a.txt", b"1")
    file_id = entry_id(app, project, "a.txt")
    post_form(
        client,
        f"/projects/{project}/entries/{file_id}/rename",
        f"/projects/{project}",
        name=bad,
    )
    assert disk_tree(app, owner, project) == ["a.txt"]
    assert "was not renamed" in client.get(f"/projects/{project}").text


def test_delete_file_and_folder(client, app, owner, project):
    upload(client, project, "keep.txt", b"1")
    upload(client, project, "gone.txt", b"1")
    upload(client, project, "dir/deep/x.txt", b"1")
    for path in ("gone.txt", "dir"):
        item = entry_id(app, project, path)
        post_form(
            client, f"/projects/{project}/entries/{item}/delete", f"/projects/{project}"
        )
    assert disk_tree(app, owner, project) == ["keep.txt"]
    with app.app_context():
        paths = db.session.scalars(db.select(ProjectFile.path)).all()
    assert paths == ["keep.txt"]


def test_delete_needs_post(client, app, project):
    upload(client, project, "a.txt", b"1")
    item = entry_id(app, project, "a.txt")
    assert client.get(f"/projects/{project}/entries/{item}/delete").status_code == 405


def test_csv_preview_is_a_table(client, app, project):
    upload(client, project, "t.csv", b"gene,count\nBRCA1,12\nTP53,7\n")
    page = client.get(f"/projects/{project}/entries/{entry_id(app, project, 't.csv')}")
    assert '<th scope="col">gene</th>' in page.text
    assert "<td>TP53</td>" in page.text


def test_json_preview_is_formatted(client, app, project):
    upload(client, project, "p.json", json.dumps({"a": [1, 2]}).encode())
    page = client.get(f"/projects/{project}/entries/{entry_id(app, project, 'p.json')}")
    assert "&#34;a&#34;: [\n    1," in page.text


def test_html_and_svg_never_render_as_active_content(client, app, project):
    upload(client, project, "x.html", b"<script>alert(1)</script>")
    upload(client, project, "x.svg", b"<svg onload='alert(1)'/>")
    for name in ("x.html", "x.svg"):
        item = entry_id(app, project, name)
        preview = client.get(f"/projects/{project}/entries/{item}").text
        assert "<script>alert" not in preview and "<svg onload" not in preview
        raw = fetch(client, f"/projects/{project}/entries/{item}/raw")
        assert raw.headers["Content-Disposition"].startswith("attachment")
        assert raw.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in raw.headers["Content-Security-Policy"]


def test_images_are_shown_inline_with_a_sandbox(client, app, project):
    upload(client, project, "plot.png", b"\x89PNG\r\n\x1a\n" + b"0" * 50)
    item = entry_id(app, project, "plot.png")
    assert "<img src=" in client.get(f"/projects/{project}/entries/{item}").text
    raw = fetch(client, f"/projects/{project}/entries/{item}/raw")
    assert raw.mimetype == "image/png"
    assert "attachment" not in raw.headers.get("Content-Disposition", "")
    assert "sandbox" in raw.headers["Content-Security-Policy"]


def test_folder_and_project_download_as_streamed_zips(client, app, project):
    upload(client, project, "a/1.txt", b"one")
    upload(client, project, "a/b/2.txt", b"two")
    upload(client, project, "top.txt", b"top")
    folder = entry_id(app, project, "a")
    response = client.get(f"/projects/{project}/entries/{folder}/download")
    assert response.is_streamed
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(archive.namelist()) == ["1.txt", "b/", "b/2.txt"]
    assert archive.read("b/2.txt") == b"two"
    whole = client.get(f"/projects/{project}/download")
    assert int(whole.headers["Content-Length"]) == len(whole.data)
    names = zipfile.ZipFile(io.BytesIO(whole.data)).namelist()
    assert sorted(names) == ["a/", "a/1.txt", "a/b/", "a/b/2.txt", "top.txt"]


def test_folders_show_the_size_of_their_contents(client, app, project):
    upload(client, project, "reads/a.fq", b"x" * 1024)
    upload(client, project, "reads/deep/b.fq", b"x" * 2048)
    row = client.get(f"/projects/{project}").text.split('data-name="reads"')[1]
    assert "3.0 KiB" in row.split("</tr>")[0]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_parallel_uploads_never_pass_the_quota(app, owner, project):
    """Eight 8 MiB uploads at once against a 10 MiB quota, over real HTTP."""
    import re
    import threading

    import requests

    from tests.conftest import PASSWORD, LiveServer

    app.config["STORAGE_QUOTA_BYTES"] = 10 * 1024**2
    with LiveServer(app) as server:
        session = requests.Session()
        login = session.get(f"{server.url}/login").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)
        session.post(
            f"{server.url}/login",
            data={
                "email": "ada@cs.ox.ac.uk",
                "password": PASSWORD,
                "csrf_token": token,
            },
        )
        page = session.get(f"{server.url}/projects/{project}").text
        header = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        start, answers = threading.Barrier(8), []

        def send(number: int) -> None:
            start.wait()
            reply = session.post(
                f"{server.url}/projects/{project}/upload",
                params={"path": f"part{number}.bin"},
                data=b"x" * (8 * 1024**2),
                headers={"X-CSRFToken": header, "Accept": "application/json"},
            )
            answers.append((reply.status_code, reply.json()["message"]))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        dashboard = session.get(f"{server.url}/projects/").text
    stored = [message for code, message in answers if code == 200]
    refused = [message for code, message in answers if code == 413]
    assert len(stored) == 1 and len(refused) == 7, answers
    assert all("storage quota is left" in message for message in refused)
    assert len(disk_tree(app, owner, project)) == 1
    assert "Using 8.0 MiB of your 10.0 MiB" in " ".join(dashboard.split())
    with app.app_context():
        from frontend.core.models import StorageReservation

        assert db.session.scalar(sa.select(sa.func.count(StorageReservation.id))) == 0


@pytest.mark.parametrize(
    "name", ["two\nlines", "tab\there", "cr\rin the middle", "a\u2028b"]
)
def test_project_names_with_control_characters_are_refused(client, owner, name):
    token = csrf_token(client.get("/projects/new").text)
    response = client.post("/projects/new", data={"name": name, "csrf_token": token})
    assert response.status_code == 200
    assert "cannot contain line breaks" in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sqlite_database_is_private(app, database_url):
    database = Path(database_url.removeprefix("sqlite:///"))
    for path in (database, database.with_name(database.name + "-wal")):
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path
    instance = Path(app.instance_path)
    assert instance.stat().st_mode & 0o777 == 0o700
