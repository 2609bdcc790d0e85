"""The review loop in a real browser (issue 14): an editor's submitted set shows in the reviewer's navigation and
inbox the moment they sign in; the review page shows the changes against production (switchable to the previous
version) with the decision beside them; the author finds the answer among their notifications."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "anvil-demo"
SET = "/o/acme/p/support-bot/s/core/"

SUBMIT = """
from django.contrib.auth import get_user_model
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet
editor = get_user_model().objects.get(username="editor")
core = PromptSet.objects.get(slug="core", project__slug="support-bot")
services.prompt_set_reopen(actor=editor, prompt_set=core)
prompt = Prompt.objects.get(prompt_set=core, key="greeting.welcome")
services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision,
                       template="Welcome back, {{ customer_name }}! How can we help you today?")
print(services.prompt_set_submit(actor=editor, prompt_set=core, note="Warmer greeting").number)
"""


def sign_in(page: Page, forge, username: str) -> None:
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_reviewer_finds_the_waiting_review_decides_beside_the_diff_and_the_author_hears_of_it(
    page: Page, forge, screenshot
):
    number = forge.cli("manage", "shell", "-c", SUBMIT).strip().splitlines()[-1]

    # The reviewer signs in: the navigation says a review waits, the landing inbox lists it with the note.
    sign_in(page, forge, "reviewer")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name=re.compile(r"Waiting for your review\s*1"))).to_be_visible()
    expect(nav.get_by_test_id("nav-notifications")).to_have_text(re.compile(r"Notifications \d+"))  # unread
    page.goto(forge.url + "/o/acme/")  # the inbox on the projects page
    row = page.get_by_test_id("review-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"v{number}")
    expect(row).to_contain_text("editor")
    expect(row).to_contain_text("Warmer greeting")
    screenshot(page, "review-inbox")

    # The review page: against production by default, the changed prompt listed, the decision beside it.
    # With one review waiting, the navigation's link opens it directly.
    nav.get_by_role("link", name=re.compile("Waiting for your review")).click()
    expect(page.get_by_role("heading", name=f"Review Core conversation version {number}")).to_be_visible()
    expect(page.get_by_test_id("review-base")).to_contain_text("live in production")
    expect(page.get_by_test_id("changed-prompts")).to_contain_text("greeting.welcome")
    expect(page.get_by_test_id("review-note")).to_have_text("Warmer greeting")
    screenshot(page, "review-page")
    page.get_by_role("link", name="Against the previous version").click()
    expect(page.get_by_test_id("review-base")).to_contain_text("the previous version")
    expect(page.get_by_test_id("changed-prompts")).to_contain_text("greeting.welcome")
    page.get_by_label("Comment").fill("Keep the question shorter.")
    page.get_by_role("button", name="Request changes").click()
    expect(page.get_by_text(f"Requested changes on version {number}")).to_be_visible()
    expect(page.locator("h1 + .badge")).to_have_text("LIVE · editing")
    expect(nav.get_by_role("link", name=re.compile("Waiting for your review"))).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    # The author signs in and finds the answer among their notifications.
    sign_in(page, forge, "editor")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_test_id("nav-notifications")).to_have_text(re.compile(r"Notifications \d+"))
    nav.get_by_test_id("nav-notifications").click()
    newest = page.locator(".notification").first  # the demo's own reviews are older
    expect(newest).to_contain_text(f"reviewer requested changes on version {number}")
    expect(newest).to_contain_text("Keep the question shorter.")
    screenshot(page, "notifications")
    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_text(re.compile(r"Marked \d+ notifications? read\."))).to_be_visible()
    expect(nav.get_by_test_id("nav-notifications")).to_have_text("Notifications")


def test_the_review_pages_fit_a_phone(page: Page, forge):
    """At 390 px the inbox, the review page (diff and decision in one column) and the notifications never scroll
    sideways."""
    forge.cli("manage", "shell", "-c", SUBMIT)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, forge, "reviewer")
    for path in ("/o/acme/", SET + "review/", SET + "review/?against=previous", "/notifications/"):
        page.goto(forge.url + path)
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{path} scrolls sideways by {wide} px at 390 px"
    page.goto(forge.url + SET + "review/")
    expect(page.get_by_role("button", name="Request changes")).to_be_visible()
