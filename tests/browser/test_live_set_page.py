"""The set page is live (issue 14): a review decided in another browser reaches an open set page, pushed by the FORGE
(its review section and status refresh without a reload), and a section holding text the user typed is left alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_review_inbox import SUBMIT, sign_in

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"


def _second_user(browser: Browser, forge, username: str) -> Page:
    context = browser.new_context(base_url=forge.url)
    other = context.new_page()
    sign_in(other, forge, username)
    return other


def _open_live(page: Page, forge) -> None:
    page.goto(forge.url + SET)
    expect(page.locator("[data-live-events]")).to_have_attribute("data-live-state", "pushed", timeout=10_000)
    page.evaluate("window.__notReloaded = true")


def test_an_approval_elsewhere_reaches_the_open_set_page_without_a_reload(page: Page, browser: Browser, forge):
    number = forge.cli("manage", "shell", "-c", SUBMIT).strip().splitlines()[-1]
    sign_in(page, forge, "editor")
    _open_live(page, forge)
    expect(page.locator("#set-status")).to_contain_text("REVIEW")
    expect(page.locator("#set-workflow")).to_contain_text(f"Version {number} is waiting for review")

    reviewer = _second_user(browser, forge, "reviewer")
    reviewer.goto(forge.url + SET + "review/")
    reviewer.get_by_role("button", name="Approve").click()
    expect(reviewer.get_by_text(f"Approved version {number}")).to_be_visible()

    expect(page.locator("#set-workflow")).to_contain_text(f"Version {number} was approved by reviewer", timeout=5000)
    expect(page.locator("#set-status")).to_contain_text("LOCKED")
    expect(page.get_by_role("button", name=f"Publish v{number} to production")).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True


def test_a_review_comment_being_typed_is_not_replaced_by_a_pushed_refresh(page: Page, browser: Browser, forge):
    number = forge.cli("manage", "shell", "-c", SUBMIT).strip().splitlines()[-1]
    sign_in(page, forge, "reviewer")
    _open_live(page, forge)
    comment = page.locator("#set-workflow").get_by_label("Comment")
    comment.fill("Half a thought about the gree")

    owner = _second_user(browser, forge, "owner")
    owner.goto(forge.url + SET + "review/")
    owner.get_by_role("button", name="Approve").click()
    expect(owner.get_by_text(f"Approved version {number}")).to_be_visible()

    # The push came (the region is held) but the typed text and the focus are where they were.
    expect(page.locator("#set-workflow[data-live-held]")).to_have_count(1, timeout=5000)
    expect(comment).to_have_value("Half a thought about the gree")
    expect(comment).to_be_focused()
    assert page.evaluate("window.__notReloaded") is True


def test_a_refresh_that_changes_nothing_leaves_the_section_and_its_buttons_in_place(page: Page, forge):
    """A pushed refresh that brings the section back unchanged does not replace it: replacing it replaced the
    "Submit for review" button under a click in progress (the refresh on connecting comes as the page is first
    used), and the click was lost. A refresh that changes it still replaces it."""
    sign_in(page, forge, "editor")
    _open_live(page, forge)
    page.evaluate("document.getElementById('set-workflow').__original = true")
    with page.expect_response(lambda response: response.url.endswith(SET) and response.request.method == "GET"):
        page.evaluate("document.body.dispatchEvent(new CustomEvent('anvil-live', {detail: {reason: 'test'}}))")
    page.wait_for_timeout(300)  # the answer's swap (or not) is done
    unchanged = page.evaluate("document.getElementById('set-workflow').__original === true")
    assert unchanged, "a refresh that changed nothing replaced the section"

    forge.cli("manage", "shell", "-c", SUBMIT)  # a submit from the console: the section's content changes
    page.evaluate("document.body.dispatchEvent(new CustomEvent('anvil-live', {detail: {reason: 'test'}}))")
    expect(page.locator("#set-workflow")).to_contain_text("is waiting for review", timeout=5000)
    assert page.evaluate("document.getElementById('set-workflow').__original === undefined")
    assert page.evaluate("window.__notReloaded") is True
