"""Guests (ALLOW_GUESTS): a visitor tries the site without an account, for a day,
in a small quota; a guest who registers keeps their projects; one whose time is
over is removed with what they made."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.models import Project, User, utcnow
from tests.conftest import PASSWORD, Auth, csrf_token, make_analysis, upload
from tests.smtp import link_in
from tests.test_accounts import path_of


@pytest.fixture
def guests_on(app):
    app.config.update(ALLOW_GUESTS=True, GUEST_QUOTA_BYTES=4096, GUEST_HOURS=24)
    return app


def start_guest(client):
    token = csrf_token(client.get("/").text)
    return client.post("/account/guest", data={"csrf_token": token})


def new_project(client, name: str = "Trial") -> int:
    page = client.get("/projects/new").text
    made = client.post(
        "/projects/new", data={"name": name, "csrf_token": csrf_token(page)}
    )
    return int(made.headers["Location"].rsplit("/", 1)[1])


def register_as_guest(client, email: str, first: str = "Grace", last: str = "Hopper"):
    """Send the guest's registration form as the page does."""
    page = client.get("/account/register").text
    return client.post(
        "/account/register",
        data={
            "first_name": first,
            "last_name": last,
            "email": email,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "csrf_token": csrf_token(page),
        },
    )


def the_guest(app) -> User:
    with app.app_context():
        guest = db.session.scalar(sa.select(User).where(User.guest_until.is_not(None)))
        db.session.expunge(guest)
        return guest


def test_guests_are_offered_only_when_the_site_allows(app, client):
    assert "Try it as a guest" not in client.get("/").text
    assert client.post("/account/guest").status_code in (400, 404)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 0


def test_a_guest_uploads_and_runs_in_a_small_quota_told_when_it_ends(guests_on, client):
    assert "Try it as a guest" in client.get("/").text
    started = start_guest(client)
    assert started.headers["Location"].endswith("/projects/")
    page = client.get("/projects/").text
    assert "You are a guest" in page and "Register to keep it" in page
    project = new_project(client)
    assert upload(client, project, "small.csv", b"a,b\n1,2\n").status_code == 200
    refused = upload(client, project, "big.bin", b"x" * 8192)
    assert refused.status_code == 413 and "quota" in refused.json["message"]
    # Another browser is not this guest.
    other = guests_on.test_client()
    assert other.get(f"/projects/{project}").status_code == 302  # to the login


@pytest.mark.parametrize(
    "url", ["/groups/", "/shared/", "/sharing/", "/change", "/tf-setup"]
)
def test_a_guest_cannot_share_or_take_an_account_page(guests_on, client, url):
    start_guest(client)
    answer = client.get(url)
    assert answer.status_code == 403 and "register (it is free)" in answer.text


def test_a_guest_cannot_make_api_tokens(guests_on, client):
    start_guest(client)
    page = client.get("/account/profile").text
    answer = client.post(
        "/account/tokens",
        data={"name": "x", "days": "30", "csrf_token": csrf_token(page)},
    )
    assert answer.status_code == 403


def test_few_guests_are_made_from_one_address(guests_on):
    guests_on.config["GUEST_PER_IP_PER_HOUR"] = 2
    answers = [start_guest(guests_on.test_client()).status_code for _ in range(3)]
    assert answers == [302, 302, 429]


def test_a_guest_who_registers_keeps_their_projects(guests_on, client, smtp):
    start_guest(client)
    project = new_project(client, "Worth keeping")
    upload(client, project, "data.csv", b"a,b\n1,2\n")
    guest = the_guest(guests_on)
    answer = register_as_guest(client, "grace@cs.ox.ac.uk")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    said = client.get(answer.headers["Location"]).text
    assert "We sent a mail to grace@cs.ox.ac.uk. Follow its link, then sign in" in said
    mail = smtp.wait_for("grace@cs.ox.ac.uk", "Confirm your")
    client.get(path_of(link_in(mail, "/confirm/")), follow_redirects=True)
    Auth(client).login("grace@cs.ox.ac.uk")
    kept = client.get(f"/projects/{project}").text
    assert "Worth keeping" in kept and "data.csv" in kept
    assert "You are a guest" not in kept
    with guests_on.app_context():
        assert db.session.get(User, guest.id) is None
        grace = db.session.scalar(sa.select(User).filter_by(email="grace@cs.ox.ac.uk"))
        assert db.session.get(Project, project).owner_id == grace.id
    moved = Path(guests_on.config["USER_DATA_DIR"]) / str(grace.id) / str(project)
    assert (moved / "files" / "data.csv").read_bytes() == b"a,b\n1,2\n"


def test_a_guest_registers_once_their_runs_have_ended(guests_on, client):
    start_guest(client)
    project = new_project(client)
    make_analysis(guests_on, project, state="running")
    answer = register_as_guest(client, "grace@cs.ox.ac.uk")
    assert answer.status_code == 409 and "Wait until your analyses have ended" in (
        answer.text
    )
    with guests_on.app_context():
        assert (
            db.session.scalar(sa.select(User).filter_by(email="grace@cs.ox.ac.uk"))
            is None
        )


def test_a_guest_whose_time_is_over_goes_with_what_they_made(guests_on, client, runner):
    start_guest(client)
    project = new_project(client)
    upload(client, project, "data.csv", b"a,b\n")
    guest = the_guest(guests_on)
    folder = Path(guests_on.config["USER_DATA_DIR"]) / str(guest.id)
    assert folder.is_dir()
    soon = (utcnow() + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M")
    said = runner.invoke(args=["purge", "--as-of", soon]).output
    assert "removed: guest account" not in said
    later = (utcnow() + timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M")
    said = runner.invoke(args=["purge", "--as-of", later]).output
    assert f"removed: guest account {guest.email}" in said
    with guests_on.app_context():
        assert db.session.get(User, guest.id) is None
        assert db.session.get(Project, project) is None
    assert not (folder / str(project)).exists()
    assert client.get("/projects/").status_code == 302  # signed out: it is gone


def test_registering_an_existing_address_as_a_guest_reveals_nothing(
    guests_on, client, smtp, make_user
):
    make_user(email="ada@cs.ox.ac.uk")
    start_guest(client)
    project = new_project(client, "Stays")
    sent = register_as_guest(client, "ada@cs.ox.ac.uk", "Ada", "Lovelace")
    answer = client.get(sent.headers["Location"])
    # Word for word what a new address gets: nothing says the account exists.
    assert "We sent a mail to ada@cs.ox.ac.uk. Follow its link, then sign in" in (
        answer.text
    )
    assert "is already associated" not in answer.text
    smtp.wait_for("ada@cs.ox.ac.uk")  # the address's owner is told instead
    with guests_on.app_context():
        assert db.session.get(Project, project).owner_id == the_guest(guests_on).id
    assert "Sign in" in answer.text or "Log in" in answer.text  # signed out, too
