"""The admin panel: who gets in, what admins can change, what is never shown."""

import re

import pytest

from frontend.core.extensions import db
from frontend.core.formatting import human_size
from frontend.core.models import DomainRule, DomainRuleKind, Role
from tests.conftest import Auth, admin_action, csrf_token, get_user, upload

ADMIN_PAGES = [
    "/admin/",
    "/admin/admin_users/",
    "/admin/admin_roles/",
    "/admin/admin_domains/",
    "/admin/admin_domains/new/",
]


@pytest.fixture
def admin_client(client, auth, make_user):
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    auth.login("root@cs.ox.ac.uk")
    return client


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_anonymous_users_are_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_plain_users_get_403(client, auth, make_user, url):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    response = client.get(url)
    assert response.status_code == 403
    assert "You do not have permission" in response.text


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admins_get_in(admin_client, url):
    assert admin_client.get(url).status_code == 200


def test_admin_can_change_a_users_roles_and_details(admin_client, make_user, app):
    user_id = make_user(email="ada@cs.ox.ac.uk")
    with app.app_context():
        db.session.add(Role(name="pipeline-author"))
        db.session.commit()
        role_id = db.session.scalar(
            db.select(Role.id).filter_by(name="pipeline-author")
        )
    edit_url = f"/admin/admin_users/edit/?id={user_id}"
    page = admin_client.get(edit_url)
    response = admin_client.post(
        edit_url,
        data={
            "email": "ada@cs.ox.ac.uk",
            "first_name": "Ada",
            "last_name": "King",
            "institution": "University of Oxford",
            "roles": [str(role_id)],
            "active": "y",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert response.status_code == 302
    user = get_user(app, "ada@cs.ox.ac.uk")
    assert user.last_name == "King" and user.institution == "University of Oxford"
    with app.app_context():
        roles = [r.name for r in db.session.merge(user).roles]
    assert roles == ["pipeline-author"]


def test_password_hash_never_appears_in_admin_pages(admin_client, make_user, app):
    user_id = make_user(email="ada@cs.ox.ac.uk")
    hashed = get_user(app, "ada@cs.ox.ac.uk").password
    pages = [
        "/admin/admin_users/",
        f"/admin/admin_users/details/?id={user_id}",
        f"/admin/admin_users/edit/?id={user_id}",
        "/admin/admin_users/?search=ada",
    ]
    for url in pages:
        html = admin_client.get(url).text
        assert hashed not in html
        assert 'name="password"' not in html
        assert "$argon2" not in html


def test_admin_confirms_and_deactivates_users(admin_client, make_user, app):
    user_id = make_user(email="bob@cs.ox.ac.uk", confirmed=False)
    for action in ("confirm", "deactivate"):
        admin_action(admin_client, "admin_users", action, user_id)
    user = get_user(app, "bob@cs.ox.ac.uk")
    assert user.confirmed_at is not None
    assert user.active is False


def test_admin_cannot_remove_their_own_admin_role(admin_client, app):
    admin_id = get_user(app, "root@cs.ox.ac.uk").id
    edit_url = f"/admin/admin_users/edit/?id={admin_id}"
    page = admin_client.get(edit_url)
    admin_client.post(
        edit_url,
        data={
            "email": "root@cs.ox.ac.uk",
            "first_name": "Root",
            "last_name": "Admin",
            "active": "y",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert admin_client.get("/admin/").status_code == 200


def test_admin_adds_a_blocked_domain_normalised(admin_client, app):
    page = admin_client.get("/admin/admin_domains/new/")
    admin_client.post(
        "/admin/admin_domains/new/",
        data={
            "domain": "  @Spam-Uni.EDU ",
            "kind": "block",
            "csrf_token": csrf_token(page.text),
        },
    )
    with app.app_context():
        rule = db.session.scalar(db.select(DomainRule))
        assert (rule.domain, rule.kind) == ("spam-uni.edu", DomainRuleKind.BLOCK)


def test_admin_form_without_csrf_changes_nothing(admin_client, make_user, app):
    user_id = make_user(email="ada@cs.ox.ac.uk")
    admin_client.post(
        f"/admin/admin_users/edit/?id={user_id}",
        data={"email": "ada@cs.ox.ac.uk", "first_name": "Mallory", "active": "y"},
    )
    assert get_user(app, "ada@cs.ox.ac.uk").first_name == "Ada"


def test_admin_lists_projects_with_owner_and_size(
    admin_client, make_user, make_project
):
    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="Liver atlas")
    auth = Auth(admin_client)
    auth.logout()
    auth.login("ada@cs.ox.ac.uk")
    upload(admin_client, project, "x.bin", b"x" * 3000)
    auth.logout()
    auth.login("root@cs.ox.ac.uk")
    page = admin_client.get("/admin/admin_projects/").text
    assert "Liver atlas" in page and "ada@cs.ox.ac.uk" in page and "2.9 KiB" in page


def test_admin_deletes_a_project_with_its_files(
    admin_client, make_user, make_project, app
):
    from pathlib import Path

    owner = make_user(email="ada@cs.ox.ac.uk")
    project = make_project(owner, name="Old")
    folder = Path(app.config["USER_DATA_DIR"]) / str(owner) / str(project)
    assert folder.exists()
    token = csrf_token(admin_client.get("/admin/admin_projects/").text)
    admin_client.post(
        "/admin/admin_projects/delete/", data={"id": str(project), "csrf_token": token}
    )
    assert not folder.exists()
    assert "Old" not in admin_client.get("/admin/admin_projects/").text


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("1 GiB", 1024**3), ("500 MiB", 500 * 1024**2), ("2.5 GB", int(2.5 * 1024**3))],
)
def test_admin_sets_a_users_storage_quota_in_mib_or_gib(
    admin_client, make_user, app, typed, stored
):
    user_id = make_user(email="ada@cs.ox.ac.uk")
    edit_url = f"/admin/admin_users/edit/?id={user_id}"

    def save(quota: str):
        page = admin_client.get(edit_url)
        fields = {"email": "ada@cs.ox.ac.uk", "first_name": "Ada", "active": "y"}
        return admin_client.post(
            edit_url,
            data={**fields, "quota": quota, "csrf_token": csrf_token(page.text)},
        )

    save(typed)
    assert get_user(app, "ada@cs.ox.ac.uk").storage_quota == stored
    assert f'value="{human_size(stored)}"' in admin_client.get(edit_url).text
    listed = admin_client.get("/admin/admin_users/").text
    assert human_size(stored) in listed
    refused = save("lots")
    assert "is not a size" in refused.text
    assert get_user(app, "ada@cs.ox.ac.uk").storage_quota == stored  # unchanged
    save("")
    assert get_user(app, "ada@cs.ox.ac.uk").storage_quota is None  # site default
    assert "site default" in admin_client.get("/admin/admin_users/").text


def test_the_users_list_shows_their_roles(admin_client, make_user):
    make_user(email="rita@cs.ox.ac.uk", roles=("reviewer",))
    make_user(email="bob@cs.ox.ac.uk")
    listed = admin_client.get("/admin/admin_users/").text
    rows = re.findall(r"<tr.*?</tr>", listed, flags=re.DOTALL)

    def roles_of(email: str) -> str:
        row = next(r for r in rows if email in r)
        return re.search(r'class="col-roles">(.*?)</td>', row, re.DOTALL)[1].strip()

    assert roles_of("rita@cs.ox.ac.uk") == "reviewer"
    assert roles_of("bob@cs.ox.ac.uk") == "none (researcher)"  # never blank


def test_admin_puts_a_pipeline_on_another_runner(admin_client, app):
    from frontend.core.runners import runner_for

    def save(url: str, runner: str):
        page = admin_client.get(url)
        assert "the site&#39;s RUNNER" in page.text or "the site's RUNNER" in page.text
        fields = {"name": "seq-qc", "enabled": "y", "runner": runner}
        return admin_client.post(
            url, data={**fields, "csrf_token": csrf_token(page.text)}
        )

    save("/admin/admin_pipelines/new/", "slurm")
    listing = admin_client.get("/admin/admin_pipelines/").text
    assert "seq-qc" in listing and "slurm" in listing
    with app.app_context():
        assert runner_for("seq-qc") == "slurm"
        assert runner_for("table-profiler") == "docker"  # no row: the site's
    edit = "/admin/admin_pipelines/edit/?id=seq-qc"
    save(edit, "")
    with app.app_context():
        assert runner_for("seq-qc") == "docker"
    # A runner that does not exist is refused on its field, and nothing changes.
    reply = save(edit, "kubernetes")
    assert reply.status_code == 200 and "Not a valid choice" in reply.text
    with app.app_context():
        assert runner_for("seq-qc") == "docker"


def test_admin_maps_a_user_to_a_cluster_account_and_it_is_audited(
    admin_client, make_user, app, client
):
    from frontend.core.models import AuditEvent

    user_id = make_user(email="ada@cs.ox.ac.uk")
    edit_url = f"/admin/admin_users/edit/?id={user_id}"
    fields = {"email": "ada@cs.ox.ac.uk", "first_name": "Ada", "active": "y"}

    def save(account: str):
        page = admin_client.get(edit_url)
        return admin_client.post(
            edit_url,
            data={
                **fields,
                "cluster_account": account,
                "csrf_token": csrf_token(page.text),
            },
        )

    for bad, words in (
        ("-s", "not an account name"),
        ("root", "never submitted as root"),
        ("ada smith", "not an account name"),
    ):
        reply = save(bad)
        assert reply.status_code == 200 and words in reply.text
        assert get_user(app, "ada@cs.ox.ac.uk").cluster_account is None
    assert save(" ada ").status_code == 302
    assert get_user(app, "ada@cs.ox.ac.uk").cluster_account == "ada"
    with app.app_context():
        event = db.session.scalar(
            db.select(AuditEvent).filter_by(action="user.cluster_account_changed")
        )
        assert event.detail == "none -> ada"
    # Ada sees it on her profile when jobs go in as users' accounts.
    app.config["SLURM_SUBMIT_AS"] = "user"
    Auth(admin_client).logout()
    Auth(admin_client).login("ada@cs.ox.ac.uk")
    profile = admin_client.get("/account/profile").text
    assert "<code>ada</code>" in profile
