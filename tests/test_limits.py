"""Login protection: limits shared by every web process, locks and unlock mail."""

from __future__ import annotations

import re
import time

import pytest
import requests
import sqlalchemy as sa

from frontend.core.extensions import db
from frontend.core.models import AuditEvent, RateLimit
from tests.conftest import PASSWORD, admin_action, csrf_token, get_user
from tests.smtp import link_in
from tests.workers import Gunicorn

WRONG = "not the password at all"


def login(session: requests.Session, base: str, email: str, password: str):
    page = session.get(base + "/login")
    return session.post(
        base + "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_token(page.text),
        },
        allow_redirects=False,
    )


def test_wrong_logins_are_slowed_then_locked_across_two_web_processes(
    app_config, app, make_user, smtp, tmp_path
):
    config = {
        **app_config,
        "SITE_URL": "http://127.0.0.1:5055",
        "RATE_LIMIT_FIRST_DELAY_SECONDS": 0.5,
        "RATE_LIMIT_MAX_DELAY_SECONDS": 0.5,
        "ACCOUNT_LOCK_AFTER": 20,
    }
    make_user(email="ada@cs.ox.ac.uk")
    webs = [Gunicorn(config), Gunicorn(config)]
    try:
        session = requests.Session()
        outcomes, refused = [], []
        while len(outcomes) < 30:
            web = webs[len(outcomes) % 2]  # alternate between the two processes
            response = login(session, web.url, "ada@cs.ox.ac.uk", WRONG)
            if response.status_code == 429:
                refused.append(len(outcomes))
                assert int(response.headers["Retry-After"]) >= 1
                assert "Too many attempts" in response.text
                time.sleep(0.55)  # longer than the longest wait set above
                continue
            assert response.status_code == 200
            outcomes.append("Login failed" in response.text)
        assert all(outcomes)
        # The first five were free; after that the other process refused the
        # next attempt too: both read one count.
        assert refused and refused[0] == 6
        # Locked at the twentieth failure: even the right password fails now.
        assert get_user(app, "ada@cs.ox.ac.uk").locked_at is not None
        time.sleep(0.55)
        locked = login(session, webs[0].url, "ada@cs.ox.ac.uk", PASSWORD)
        assert locked.status_code == 200 and "Login failed" in locked.text
        # One unlock mail (not one per further failure); its link unlocks.
        message = smtp.wait_for("ada@cs.ox.ac.uk", "Your Labqueue account was locked")
        assert len(smtp.sent_to("ada@cs.ox.ac.uk")) == 1
        path = link_in(message, "/account/unlock/").removeprefix(config["SITE_URL"])
        page = session.get(webs[1].url + path)
        assert "Unlock my account" in page.text
        # Following the link changes nothing (a mail scanner may follow it).
        assert get_user(app, "ada@cs.ox.ac.uk").locked_at is not None
        unlocked = session.post(
            webs[1].url + path, data={"csrf_token": csrf_token(page.text)}
        )
        assert "Your account is unlocked" in unlocked.text
        time.sleep(0.55)  # this IP's own count (past its 20 free) still applies
        response = login(session, webs[0].url, "ada@cs.ox.ac.uk", PASSWORD)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/projects/")
        # The link was for that lock only.
        again = session.get(webs[1].url + path)
        assert again.status_code == 400 and "not valid" in again.text
    finally:
        for web in webs:
            web.stop()
    with app.app_context():
        actions = db.session.scalars(
            sa.select(AuditEvent.action).order_by(AuditEvent.id)
        ).all()
    # The 30 wrong passwords (the right one while locked is refused, not counted).
    assert actions.count("login.failed") == 30
    assert actions.count("account.locked") == 1
    assert actions[-1] == "account.unlocked"


@pytest.fixture
def strict(app):
    app.config.update(
        RATE_LIMIT_FREE_ATTEMPTS=2,
        RATE_LIMIT_FREE_PER_IP=3,
        RATE_LIMIT_FIRST_DELAY_SECONDS=60.0,
    )
    return app


def test_reset_requests_for_one_address_are_limited(client, strict):
    answers = []
    for _ in range(4):
        token = csrf_token(client.get("/reset").text)
        response = client.post(
            "/reset", data={"email": "ada@cs.ox.ac.uk", "csrf_token": token}
        )
        answers.append(response.status_code)
    # Two free, the third counted and made to wait, the fourth refused.
    assert answers == [200, 200, 200, 429]
    assert response.headers["Retry-After"] == "60"
    assert "Wait 60 seconds and try again" in response.text
    # Another address from the same IP: the IP's count has one free left.
    token = csrf_token(client.get("/reset").text)
    other = client.post(
        "/reset", data={"email": "bob@cs.ox.ac.uk", "csrf_token": token}
    )
    assert other.status_code == 200


def test_registrations_from_one_address_are_limited(client, strict):
    from tests.test_accounts import register

    codes = [register(client, f"user{n}@cs.ox.ac.uk").status_code for n in range(5)]
    assert codes == [200, 200, 200, 200, 429]


def test_a_successful_login_clears_the_account_count(auth, make_user, strict, app):
    make_user(email="ada@cs.ox.ac.uk")
    auth.login("ada@cs.ox.ac.uk", WRONG)
    assert auth.login("ada@cs.ox.ac.uk").status_code == 302
    with app.app_context():
        keys = db.session.scalars(sa.select(RateLimit.key)).all()
    assert "login-address:ada@cs.ox.ac.uk" not in keys
    assert "login-ip:127.0.0.1" in keys  # an IP's count lapses on its own


def test_admins_see_and_clear_locks(client, auth, make_user, app, smtp):
    app.config.update(ACCOUNT_LOCK_AFTER=3, RATE_LIMIT_FREE_ATTEMPTS=10)
    make_user(email="ada@cs.ox.ac.uk")
    make_user(email="root@cs.ox.ac.uk", roles=("admin",))
    for _ in range(3):
        auth.login("ada@cs.ox.ac.uk", WRONG)
    smtp.wait_for("ada@cs.ox.ac.uk", "Your Labqueue account was locked")
    auth.login("root@cs.ox.ac.uk")
    page = client.get("/admin/admin_users/")
    assert "Locked" in page.text
    user_id = get_user(app, "ada@cs.ox.ac.uk").id
    admin_action(client, "admin_users", "unlock", user_id)
    assert get_user(app, "ada@cs.ox.ac.uk").locked_at is None
    auth.logout()
    assert auth.login("ada@cs.ox.ac.uk").status_code == 302
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "account.unlocked")
        ).one()
        assert (event.actor_email, event.detail) == ("root@cs.ox.ac.uk", "by an admin")


def test_a_forged_unlock_link_does_nothing(client, make_user, app):
    make_user(email="ada@cs.ox.ac.uk", locked_at=None)
    page = client.get("/account/unlock/WzEsIjIwMjYtMDEtMDFUMDA6MDA6MDAiXQ.forged")
    assert page.status_code == 400 and "not valid" in page.text
    assert not re.search(r"Unlock my account</button>", page.text)


def test_a_shared_ip_does_not_lock_an_account(auth, make_user, app):
    """A lab behind one address: others' failures slow that address down, but
    only the account's own failures lock it."""
    app.config.update(ACCOUNT_LOCK_AFTER=3, RATE_LIMIT_FREE_PER_IP=100)
    make_user(email="ada@cs.ox.ac.uk")
    for n in range(5):
        auth.login(f"student{n}@cs.ox.ac.uk", WRONG)
    auth.login("ada@cs.ox.ac.uk", WRONG)
    assert get_user(app, "ada@cs.ox.ac.uk").locked_at is None
    assert auth.login("ada@cs.ox.ac.uk").status_code == 302


def test_lapsed_counts_are_forgotten(auth, app):
    from datetime import timedelta

    from frontend.core.limits import forget_lapsed
    from frontend.core.models import utcnow

    auth.login("ada@cs.ox.ac.uk", WRONG)
    auth.login("bob@cs.ox.ac.uk", WRONG)
    with app.app_context():
        old = db.session.get(RateLimit, "login-address:bob@cs.ox.ac.uk")
        old.first_at = utcnow() - timedelta(hours=2)
        db.session.commit()
        assert forget_lapsed() == 1
        keys = set(db.session.scalars(sa.select(RateLimit.key)))
    assert keys == {"login-ip:127.0.0.1", "login-address:ada@cs.ox.ac.uk"}
