"""Browser journeys in headless Chromium, driven by Playwright, over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, LiveServer
from tests.services import require_chromium
from tests.smtp import link_in

pytestmark = pytest.mark.browser

OUTPUT = Path(os.environ.get("LABQUEUE_TEST_OUTPUT", "test-output")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(app):
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with LiveServer(app) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(base_url=server.url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


def test_register_confirm_login_profile(page, smtp):
    from playwright.sync_api import expect

    page.goto("/")
    page.get_by_role("link", name="Register with your institution's email").click()
    page.get_by_label("First name").fill("Rosalind")
    page.get_by_label("Last name").fill("Franklin")
    page.get_by_label("Email Address").fill("rosalind@kcl.ac.uk")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Retype Password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "We have sent a confirmation link"
    )
    page.screenshot(path=OUTPUT / "registered.png", full_page=True)

    message = smtp.wait_for("rosalind@kcl.ac.uk", "Confirm your Labqueue account")
    page.goto(link_in(message, "/confirm/"))
    expect(page.get_by_role("alert")).to_contain_text("Thank you")

    page.get_by_label("Email Address").fill("rosalind@kcl.ac.uk")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()

    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.locator("#nav-user")).to_contain_text("Rosalind Franklin")
    expect(page.locator("#profile-institution")).to_contain_text(
        "King's College London"
    )
    page.screenshot(path=OUTPUT / "profile.png", full_page=True)

    page.get_by_role("button", name="Log out").click()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Log in")).to_be_visible()


def test_refused_address_explains_how_to_get_access(page):
    from playwright.sync_api import expect

    page.goto("/register")
    page.get_by_label("First name").fill("Eve")
    page.get_by_label("Last name").fill("Example")
    page.get_by_label("Email Address").fill("eve@gmail.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Retype Password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    error = page.locator(".invalid-feedback")
    expect(error).to_contain_text("open to academic email addresses only")
    expect(error).to_contain_text("admins@example.org")
    page.screenshot(path=OUTPUT / "refused.png", full_page=True)
