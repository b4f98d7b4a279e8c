"""Two-factor login with an authenticator app (TOTP), through Flask-Security-Too."""

from __future__ import annotations

import re

import sqlalchemy as sa
from passlib.totp import TOTP

from frontend.core.extensions import db
from frontend.core.models import AuditEvent, RateLimit
from tests.conftest import PASSWORD, admin_action, csrf_token, get_user


def code_for(key: str, offset: int = 0) -> str:
    """What an authenticator app shows for ``key`` (``offset`` steps of 30 s on)."""
    totp = TOTP(key=key.replace(" ", ""), format="base32")
    return totp.generate(time=totp.now() + 30 * offset).token


def enable(client) -> str:
    """Turn two-factor login on from the setup page; returns the key shown."""
    page = client.get("/tf-setup").text
    shown = client.post(
        "/tf-setup", data={"setup": "authenticator", "csrf_token": csrf_token(page)}
    ).text
    key = re.search(r'<code id="tf-key"[^>]*>([^<]+)</code>', shown).group(1).strip()
    assert 'src="data:image/svg+xml;base64,' in shown  # the QR code to scan
    done = client.post(
        "/tf-validate",
        data={"code": code_for(key), "csrf_token": csrf_token(shown)},
        follow_redirects=True,
    )
    assert "Two-factor login: on" in done.text
    return key


def password_step(client, email: str = "ada@cs.ox.ac.uk"):
    page = client.get("/login").text
    return client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_token(page)},
    )


def test_enrol_then_every_login_asks_for_the_code(client, auth, make_user, app):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    key = enable(client)
    assert get_user(app, "ada@cs.ox.ac.uk").tf_primary_method == "authenticator"
    auth.logout()

    # The password alone no longer signs in: it leads to the code page.
    step = password_step(client)
    assert step.status_code == 302 and "/tf-validate" in step.headers["Location"]
    assert client.get("/account/profile").status_code == 302
    page = client.get(step.headers["Location"]).text
    assert "Enter your code" in page
    wrong = client.post(
        "/tf-validate", data={"code": "000000", "csrf_token": csrf_token(page)}
    )
    assert "Invalid code" in wrong.text
    with app.app_context():
        keys = db.session.scalars(sa.select(RateLimit.key)).all()
    assert "login-address:ada@cs.ox.ac.uk" in keys  # wrong codes count as failures
    right = client.post(
        "/tf-validate",
        data={"code": code_for(key, offset=1), "csrf_token": csrf_token(page)},
    )
    assert right.status_code == 302
    assert client.get("/account/profile").status_code == 200
    with app.app_context():
        trail = [
            (e.action, e.detail)
            for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        ]
    assert ("two_factor.enabled", "authenticator") in trail
    assert ("login.failed", "wrong two-factor code, attempt 1") in trail


def test_admins_must_set_it_up_when_the_site_says_so(client, auth, make_user, app):
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("root@cs.ox.ac.uk")
    assert client.get("/admin/").status_code == 200
    app.config["ADMIN_TWO_FACTOR_REQUIRED"] = True
    # Signed in before the rule: the admin pages send them to set it up.
    refused = client.get("/admin/admin_users/")
    assert refused.status_code == 302 and "/tf-setup" in refused.headers["Location"]
    auth.logout()
    # A new login asks for the setup before anything else.
    step = password_step(client, "root@cs.ox.ac.uk")
    assert step.status_code == 302
    setup = client.get(step.headers["Location"], follow_redirects=True).text
    assert "requires two-factor login for your account" in setup
    assert client.get("/admin/").status_code != 200
    # Other users are not asked.
    other = app.test_client()
    assert password_step(other).headers["Location"].endswith("/projects/")


def test_admin_turns_it_off_for_a_lost_phone(client, auth, make_user, app):
    ada = make_user(email="ada@cs.ox.ac.uk")
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    auth.login("ada@cs.ox.ac.uk")
    enable(client)
    auth.logout()
    auth.login("root@cs.ox.ac.uk")
    admin_action(client, "admin_users", "reset_two_factor", ada)
    auth.logout()
    assert password_step(client).headers["Location"].endswith("/projects/")
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "two_factor.removed")
        ).one()
    assert event.actor_email == "root@cs.ox.ac.uk"


def test_a_lost_phone_can_ask_the_administrators(client, auth, make_user, smtp):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk")
    enable(client)
    auth.logout()
    step = password_step(client)
    page = client.get(step.headers["Location"]).text
    assert "Lost your phone?" in page
    token = re.search(r'id="rescue_csrf_token"[^>]*value="([^"]+)"', page).group(1)
    answer = client.post("/tf-rescue", data={"help_setup": "help", "csrf_token": token})
    assert "The administrators were asked to help" in answer.text
    # To the site's admins (ADMINS), not Flask-Security's no-reply@localhost.
    message = smtp.wait_for("admins@example.org")
    assert "ada@cs.ox.ac.uk" in message.as_string()
