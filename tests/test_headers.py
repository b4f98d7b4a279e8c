"""Security headers: the site's Content-Security-Policy and framing rules on every
page, Flask-Admin's own narrow policy, user files under theirs, HSTS over https.
(tests/test_browser.py checks that no page a journey visits breaks the policy.)"""

from __future__ import annotations

import re

import pytest

from frontend import create_app
from frontend.headers import admin_handlers, handler_hash
from tests.conftest import base_config, upload

PAGES = [
    "/",
    "/login",
    "/register",
    "/about",
    "/reset",
    "/confirm",
    "/account/unlock/not-a-token",
    "/no-such-page",
]
SIGNED_IN_PAGES = [
    "/",
    "/projects/",
    "/analyses/",
    "/analyses/history",
    "/account/profile",
    "/tf-setup",
]


def policy(response) -> dict[str, str]:
    text = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in text.split(";"))


def assert_site_headers(response) -> None:
    found = policy(response)
    assert found["script-src"] == "'self'"  # no inline script, no eval
    assert found["style-src"] == "'self'"
    assert found["frame-ancestors"] == "'none'"
    assert found["object-src"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("url", PAGES)
def test_every_public_page_has_the_site_policy(client, url):
    assert_site_headers(client.get(url))


@pytest.mark.parametrize("url", SIGNED_IN_PAGES)
def test_signed_in_pages_have_the_site_policy(client, auth, make_user, url):
    make_user()
    auth.login()
    response = client.get(url, follow_redirects=True)
    assert response.status_code == 200
    assert_site_headers(response)


def test_no_page_template_carries_inline_script_or_style(app):
    from pathlib import Path

    templates = Path(app.root_path) / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
        assert not re.search(r"\son[a-z]+=", text), template
        assert "style=" not in text, template


ADMIN_LISTS = [
    "/admin/admin_users/",
    "/admin/admin_projects/",
    "/admin/admin_analyses/",
    "/admin/admin_domains/",
    "/admin/admin_roles/",
]


def test_admin_pages_admit_only_flask_admins_own_handlers(
    client, auth, make_user, make_project, app
):
    from frontend.core.extensions import db
    from frontend.core.models import DomainRule, DomainRuleKind

    make_project(make_user(email="root@cs.ox.ac.uk", roles=("admin",)))
    with app.app_context():
        db.session.add(DomainRule(domain="example.org", kind=DomainRuleKind.BLOCK))
        db.session.commit()
        admitted = set(admin_handlers(app.extensions["admin"][0]))
    auth.login("root@cs.ox.ac.uk")
    seen = set()
    for url in ADMIN_LISTS:
        page = client.get(url)
        assert page.status_code == 200, url
        found = policy(page)
        assert found["frame-ancestors"] == "'none'"
        assert "'unsafe-inline'" not in found["script-src"]
        allowed = set(found["script-src"].split()) - {"'self'", "'unsafe-hashes'"}
        assert allowed == {handler_hash(text) for text in admitted}
        # Every inline handler and javascript: link on the page is admitted.
        inline = re.findall(
            r'\s(?:on[a-z]+|href)="((?:return|javascript:)[^"]*)"', page.text
        )
        seen |= {text.replace("&#39;", "'") for text in inline}
    assert seen <= admitted, seen - admitted
    assert any("safeConfirm" in text for text in seen)  # a row's delete button
    assert any("modelActions.execute" in text for text in seen)  # an action


def test_user_files_keep_their_own_stricter_policy(
    client, auth, make_user, make_project, app
):
    from frontend.core.extensions import db
    from frontend.core.models import ProjectFile

    project = make_project(make_user())
    auth.login()
    upload(client, project, "page.html", b"<script>alert(1)</script>")
    with app.app_context():
        entry = db.session.scalar(
            db.select(ProjectFile.id).filter_by(project_id=project, path="page.html")
        )
    response = client.get(f"/projects/{project}/entries/{entry}/download")
    response.close()
    assert response.status_code == 200
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_hsts_only_when_the_site_is_https(tmp_path, smtp):
    plain = create_app(base_config(tmp_path / "a", smtp))
    assert "Strict-Transport-Security" not in plain.test_client().get("/").headers
    secure = create_app(
        {**base_config(tmp_path / "b", smtp), "SITE_URL": "https://lab.example.org"}
    )
    response = secure.test_client().get("/", base_url="https://lab.example.org")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert secure.config["SESSION_COOKIE_SECURE"] is True
    assert secure.config["PREFERRED_URL_SCHEME"] == "https"
