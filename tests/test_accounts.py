"""Account flows end to end over HTTP, with mail through a real SMTP server."""

import base64
import json
import re
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.models import DomainRule, DomainRuleKind, OutgoingMail
from tests.conftest import PASSWORD, csrf_token, get_user
from tests.smtp import link_in, text_body


def register(client, email, password=PASSWORD, first="Ada", last="Lovelace"):
    token = csrf_token(client.get("/register").text)
    return client.post(
        "/register",
        data={
            "first_name": first,
            "last_name": last,
            "email": email,
            "password": password,
            "password_confirm": password,
            "csrf_token": token,
        },
        follow_redirects=True,
    )


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def add_rule(app, domain, kind, institution=None):
    with app.app_context():
        db.session.add(DomainRule(domain=domain, kind=kind, institution=institution))
        db.session.commit()


def test_academic_registration_confirm_and_login(client, auth, smtp, app):
    response = register(client, "ada@mail.imperial.ac.uk")
    assert "We have sent a confirmation link" in response.text

    message = smtp.wait_for("ada@mail.imperial.ac.uk", "Confirm your Labqueue account")
    assert "Imperial College London" in message.get_body(("plain",)).get_content()
    user = get_user(app, "ada@mail.imperial.ac.uk")
    assert user.confirmed_at is None
    assert user.institution == "Imperial College London"

    # Unconfirmed: the correct password is not enough.
    response = auth.login("ada@mail.imperial.ac.uk")
    assert "/projects/" not in response.headers.get("Location", "")

    client.get(path_of(link_in(message, "/confirm/")), follow_redirects=True)
    assert get_user(app, "ada@mail.imperial.ac.uk").confirmed_at is not None

    response = auth.login("ada@mail.imperial.ac.uk")
    assert response.headers["Location"].endswith("/projects/")
    profile = client.get("/account/profile").text
    assert "Imperial College London" in profile
    assert "Signed in as" in profile and "Ada Lovelace" in profile


def test_unconfirmed_user_cannot_log_in(client, auth, make_user):
    make_user(email="bob@cs.ox.ac.uk", confirmed=False)
    response = auth.login("bob@cs.ox.ac.uk")
    assert response.status_code == 200
    assert "follow the confirmation link we emailed you first" in response.text
    assert client.get("/account/profile").status_code == 302


def test_failed_login_does_not_say_which_part_was_wrong(auth, make_user):
    make_user(email="ada@cs.ox.ac.uk")
    make_user(email="bob@cs.ox.ac.uk", confirmed=False)
    wrong_password = auth.login("ada@cs.ox.ac.uk", "not the password at all").text
    unknown = auth.login("nobody@cs.ox.ac.uk").text
    unconfirmed = auth.login("bob@cs.ox.ac.uk").text
    for page in (wrong_password, unknown, unconfirmed):
        assert "Login failed. Check your email and password" in page


@pytest.mark.parametrize(
    "email", ["eve@gmail.com", "eve@notmit.edu", "eve@imperial.ac.uk.evil.com"]
)
def test_non_academic_address_is_refused_with_a_way_forward(client, smtp, app, email):
    response = register(client, email)
    assert "open to academic email addresses only" in response.text
    assert "admins@example.org" in response.text  # whom to ask for access
    assert get_user(app, email) is None
    assert smtp.sent_to(email) == []


def test_blocked_domain_is_refused_even_when_academic(client, app):
    add_rule(app, "ox.ac.uk", DomainRuleKind.BLOCK)
    response = register(client, "eve@cs.ox.ac.uk")
    assert "cannot register here" in response.text
    assert get_user(app, "eve@cs.ox.ac.uk") is None


def test_allowed_domain_is_accepted_with_its_institution(client, app, smtp):
    add_rule(app, "research-centre.org", DomainRuleKind.ALLOW, "Research Centre")
    register(client, "kim@lab.research-centre.org")
    user = get_user(app, "kim@lab.research-centre.org")
    assert user is not None and user.institution == "Research Centre"
    smtp.wait_for("kim@lab.research-centre.org")


def test_academic_only_can_be_switched_off(tmp_path, smtp):
    import flask_migrate

    from frontend import create_app
    from tests.conftest import base_config

    app = create_app({**base_config(tmp_path, smtp), "ACADEMIC_EMAIL_ONLY": False})
    with app.app_context():
        flask_migrate.upgrade()
    register(app.test_client(), "sam@gmail.com")
    assert get_user(app, "sam@gmail.com") is not None


def test_password_shorter_than_twelve_is_refused(client, app):
    response = register(client, "ada@cs.ox.ac.uk", password="short pass1")
    assert "Password must be at least 12 characters" in response.text
    assert get_user(app, "ada@cs.ox.ac.uk") is None


def test_passwords_are_hashed_with_argon2(client, app):
    register(client, "ada@cs.ox.ac.uk")
    assert get_user(app, "ada@cs.ox.ac.uk").password.startswith("$argon2")


def test_registering_an_existing_address_reveals_nothing(client, make_user, smtp):
    make_user(email="ada@cs.ox.ac.uk")
    fresh = register(client, "new@cs.ox.ac.uk")
    existing = register(client, "ada@cs.ox.ac.uk")
    assert existing.status_code == fresh.status_code == 200
    assert "We have sent a confirmation link" in existing.text
    # The owner of the address is told by mail instead.
    smtp.wait_for("ada@cs.ox.ac.uk")


def test_password_reset_by_mail(client, auth, make_user, smtp, app, start_worker):
    make_user(email="ada@cs.ox.ac.uk")
    start_worker()
    token = csrf_token(client.get("/reset").text)
    client.post("/reset", data={"email": "ada@cs.ox.ac.uk", "csrf_token": token})
    message = smtp.wait_for("ada@cs.ox.ac.uk", "Reset your Labqueue password")

    reset_page = client.get(path_of(link_in(message, "/reset/")))
    new_password = "a brand new passphrase"
    client.post(
        reset_page.request.path,
        data={
            "password": new_password,
            "password_confirm": new_password,
            "csrf_token": csrf_token(reset_page.text),
        },
    )
    assert "Login failed" in auth.login("ada@cs.ox.ac.uk", PASSWORD).text
    response = auth.login("ada@cs.ox.ac.uk", new_password)
    assert response.headers["Location"].endswith("/projects/")


def outbox_rows(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [
            (mail.recipient, mail.subject)
            for mail in db.session.scalars(sa.select(OutgoingMail))
        ]


def broker_messages(app) -> list[tuple[str, list]]:
    """The tasks waiting in the embedded broker (no worker is consuming)."""
    broker = sa.create_engine(app.config["CELERY_BROKER_URL"].removeprefix("sqla+"))
    messages = []
    with broker.connect() as connection:
        if sa.inspect(connection).has_table("kombu_message"):  # made on first send
            payloads = connection.execute(sa.text("SELECT payload FROM kombu_message"))
            messages = [json.loads(payload) for (payload,) in payloads]
    broker.dispose()
    return [
        (m["headers"]["task"], json.loads(base64.b64decode(m["body"]))[0])
        for m in messages
    ]


@pytest.mark.parametrize("path", ["/reset", "/confirm"])
def test_mail_requests_do_the_same_work_for_any_address(
    client, make_user, app, smtp, path, start_worker
):
    make_user(email="ada@cs.ox.ac.uk", confirmed=path == "/reset")
    pages = []
    for email in ("ada@cs.ox.ac.uk", "nobody@cs.ox.ac.uk"):
        token = csrf_token(client.get(path).text)
        response = client.post(
            path, data={"email": email, "csrf_token": token}, follow_redirects=True
        )
        assert response.status_code == 200
        # The CSRF tokens are signed with the time: they differ from page to page.
        page = re.sub(
            r'(name="csrf-token" content|value)="[\w.-]{40,}"', "", response.text
        )
        pages.append(page.replace(email, "EMAIL"))
    # The same page, nothing written, and one request each for a worker: the
    # request never looked the address up, so it cannot take longer for either.
    assert pages[0] == pages[1]
    assert outbox_rows(app) == []
    kind = "reset" if path == "/reset" else "confirm"
    assert broker_messages(app) == [
        ("labqueue.account_mail", [kind, "ada@cs.ox.ac.uk"]),
        ("labqueue.account_mail", [kind, "nobody@cs.ox.ac.uk"]),
    ]
    # The worker sends the mail where an account suits it, and only there.
    start_worker()
    subject = "Reset your" if path == "/reset" else "Confirm your"
    smtp.wait_for("ada@cs.ox.ac.uk", subject)
    assert smtp.sent_to("nobody@cs.ox.ac.uk") == []


def test_unknown_requests_for_mail_change_nothing(client, make_user, app, smtp):
    """A confirmed account asking for confirmation again, or a malformed address,
    gets the same answer and no mail."""
    make_user(email="ada@cs.ox.ac.uk")
    token = csrf_token(client.get("/confirm").text)
    bad = client.post("/confirm", data={"email": "not an address", "csrf_token": token})
    assert bad.status_code == 200
    assert "Invalid email address" in bad.text
    assert broker_messages(app) == []
    with app.app_context():
        from frontend.accounts.services import send_account_mail

        assert send_account_mail("confirm", "ada@cs.ox.ac.uk") is False
        assert send_account_mail("reset", "nobody@cs.ox.ac.uk") is False
    assert outbox_rows(app) == []


def test_account_mail_is_wiped_from_the_outbox_once_sent(client, app, smtp):
    register(client, "new@cs.ox.ac.uk")
    message = smtp.wait_for("new@cs.ox.ac.uk", "Confirm your Labqueue account")
    assert "/confirm/" in text_body(message)
    with app.app_context():
        mail = db.session.scalars(sa.select(OutgoingMail)).one()
        assert mail.sent_at is not None
        assert "/confirm/" not in mail.body and mail.html is None


def test_login_is_tracked(auth, make_user, app):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    user = get_user(app, "ada@cs.ox.ac.uk")
    assert user.login_count == 1
    assert user.current_login_ip == "127.0.0.1"
    assert user.current_login_at is not None


def test_logout_only_by_post(client, auth, make_user):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    client.get("/logout")
    assert client.get("/account/profile").status_code == 200  # still logged in
    auth.logout()
    assert client.get("/account/profile").status_code == 302


def test_change_password(client, auth, make_user):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    page = client.get("/change")
    new_password = "another long passphrase"
    client.post(
        "/change",
        data={
            "password": PASSWORD,
            "new_password": new_password,
            "new_password_confirm": new_password,
            "csrf_token": csrf_token(page.text),
        },
    )
    auth.logout()
    response = auth.login("ada@cs.ox.ac.uk", new_password)
    assert response.headers["Location"].endswith("/projects/")


def test_profile_name_can_be_corrected(client, auth, make_user, app):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    token = csrf_token(client.get("/account/profile").text)
    client.post(
        "/account/profile",
        data={"first_name": "Augusta Ada", "last_name": "King", "csrf_token": token},
    )
    assert "Augusta Ada King" in client.get("/account/profile").text
    user = get_user(app, "ada@cs.ox.ac.uk")
    assert user.last_name == "King"
    assert user.notify_by_email is False  # the box was not ticked


def test_form_without_csrf_token_is_refused_and_changes_nothing(client, app):
    response = client.post(
        "/register",
        data={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@cs.ox.ac.uk",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
    )
    assert response.status_code in (200, 400)
    assert get_user(app, "ada@cs.ox.ac.uk") is None


# --- Links in mail, host names, sessions ------------------------------------------

SITE = "https://labqueue.uni.example"


def all_links(smtp) -> list[str]:
    import re

    from tests.smtp import text_body

    return [
        link
        for message in smtp.messages
        for link in re.findall(r"https?://[^\s\"'<>]+", text_body(message))
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Host": "labqueue.uni.example.evil.example"},
        {"X-Forwarded-Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
    ],
)
def test_reset_mail_never_links_off_the_site(
    client, make_user, smtp, app, headers, start_worker
):
    app.config["SITE_URL"] = SITE
    make_user(email="ada@cs.ox.ac.uk")
    # The attacker's client sends both requests with its headers, as in the report
    # (GET for the CSRF cookie and token, then POST); CSRF checks the referrer
    # over HTTPS.
    attack = {"Host": "labqueue.uni.example", "Referer": f"{SITE}/reset", **headers}
    form = client.get("/reset", headers=attack)
    if "Host" in headers:  # a request for another host is refused outright
        assert form.status_code == 400
        assert "This server does not answer for" in form.text
        response = client.post(
            "/reset", data={"email": "ada@cs.ox.ac.uk"}, headers=attack
        )
        assert response.status_code == 400
        assert smtp.sent_to("ada@cs.ox.ac.uk") == []
    else:
        start_worker(SITE_URL=SITE)  # the worker sends the mail, with its links
        client.post(
            "/reset",
            data={"email": "ada@cs.ox.ac.uk", "csrf_token": csrf_token(form.text)},
            headers=attack,
        )
        smtp.wait_for("ada@cs.ox.ac.uk", "Reset your Labqueue password")
    links = all_links(smtp)
    assert all(link.startswith(SITE + "/") for link in links), links


def test_confirmation_links_use_the_site_url_from_any_local_name(client, smtp, app):
    # A developer's machine answers to localhost and 127.0.0.1 alike; the mail
    # still names the configured address.
    from tests.test_accounts import register

    register(client, "ada@cs.ox.ac.uk")
    message = smtp.wait_for("ada@cs.ox.ac.uk", "Confirm your Labqueue account")
    assert link_in(message, "/confirm/").startswith("http://127.0.0.1:5055/confirm/")
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400


def test_a_copied_session_cookie_is_dead_after_logout(app, auth, make_user):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    thief = app.test_client()
    for cookie in auth.client._cookies.values():
        thief.set_cookie(cookie.key, cookie.value, domain=cookie.domain)
    assert thief.get("/account/profile").status_code == 200  # the copy works
    auth.logout()
    assert thief.get("/account/profile").status_code == 302  # to the login page
    assert auth.client.get("/account/profile").status_code == 302


def test_remember_cookie_is_secure_like_the_session_cookie(app, client, make_user):
    app.config.update(
        SITE_URL=SITE, SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=None
    )
    from frontend import _complete_config

    _complete_config(app)
    make_user(email="ada@cs.ox.ac.uk")
    site = {"Host": "labqueue.uni.example", "Referer": f"{SITE}/login"}
    token = csrf_token(client.get("/login", headers=site).text)
    response = client.post(
        "/login",
        data={
            "email": "ada@cs.ox.ac.uk",
            "password": PASSWORD,
            "remember": "y",
            "csrf_token": token,
        },
        headers=site,
    )
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    assert "remember_token" in cookies, cookies
    assert "; Secure" in cookies["remember_token"]
    assert "; Secure" in cookies["session"]


def test_cookies_are_secure_exactly_when_the_site_is_https(tmp_path, smtp):
    from frontend import create_app
    from tests.conftest import base_config

    for site, secure in ((SITE, True), ("http://127.0.0.1:5055", False)):
        app = create_app({**base_config(tmp_path, smtp), "SITE_URL": site})
        assert app.config["SESSION_COOKIE_SECURE"] is secure
        assert app.config["REMEMBER_COOKIE_SECURE"] is secure


def test_profile_shows_storage_with_outputs_counted(
    client, auth, make_user, make_project, app
):
    import re

    from frontend.core.models import AnalysisState
    from tests.conftest import make_analysis, upload

    project = make_project(make_user())
    auth.login()
    upload(client, project, "reads.fastq", b"@r1\nACGT\n+\nIIII\n" * 128)  # 2 KiB
    make_analysis(app, project, state=AnalysisState.SUCCEEDED, output_bytes=3 * 1024**2)
    page = client.get("/account/profile").text
    parts = re.sub(r"\s+", " ", page[page.index('id="storage-parts"') :])
    assert 'Project files</dt> <dd class="col-sm-6">2.0 KiB' in parts
    assert 'Analysis outputs and logs</dt> <dd class="col-sm-6">3.0 MiB' in parts
    assert "Using 3.0 MiB of your 20.0 GiB quota." in re.sub(r"\s+", " ", page)


@pytest.mark.parametrize(
    ("password", "advice"),
    [
        ("password1234", "This is a very common password."),
        ("aaaaaaaaaaaaaaaa", "Repeats like &#34;aaa&#34; are easy to guess."),
    ],
)
def test_a_guessable_password_is_refused_with_advice(
    client, app, smtp, password, advice
):
    page = register(client, "new@cs.ox.ac.uk", password=password)
    assert advice in page.text
    assert get_user(app, "new@cs.ox.ac.uk") is None
    assert smtp.sent_to("new@cs.ox.ac.uk") == []
