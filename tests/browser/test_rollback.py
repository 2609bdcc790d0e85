"""Rollback in a real browser: one action and a confirmation, then the LIVE app runs the old text again.

Counts the clicks from the release page to the rolled-back release (goal: one action + confirm), and checks that
the new version names who rolled back and the approval of the version it copies, never one of its own.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_journey import live_app, sign_in  # noqa: F401 (live_app: the LIVE app fixture)

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"


def test_rollback_is_one_action_and_a_confirmation(page: Page, forge, live_app):  # noqa: F811
    old_text = live_app.wait_for(lambda line: line["text"], timeout=15)["text"]
    forge.cli("publish", "acme/support-bot/core", "--version", "2", "--environment", "production", "--as", "editor")
    live_app.wait_for(lambda line: line["text"] != old_text, timeout=10)
    sign_in(page, forge, "editor")
    page.goto(forge.url + SET + "versions/")

    actions = 0
    page.locator("#v1").get_by_role("button", name="Roll back production to version 1").click()
    actions += 1
    expect(page.get_by_role("heading", name="Roll back production to version 1 of")).to_be_visible()
    expect(page.get_by_test_id("rollback-plan")).to_contain_text("This makes version 3 with the content of version 1")
    expect(page.locator(".diff-prompt").first).to_be_visible()  # the diff from what is live
    page.get_by_role("button", name="Roll back production to v1").click()
    actions += 1
    expect(page.get_by_role("heading", name="Version 3 is live in production")).to_be_visible()
    live_app.wait_for(lambda line: line["text"] == old_text, timeout=5)
    expect(page.get_by_test_id("ack").filter(has_text="v3")).to_be_visible(timeout=5_000)
    assert actions <= 2

    page.goto(forge.url + SET + "versions/")
    row = page.locator("#v3")
    expect(row.get_by_test_id("rollback-of")).to_have_text("rollback to v1 by editor")
    expect(row.get_by_test_id("approval-copied")).to_contain_text("content approved as v1 by reviewer")
    # Going forward again is offered the same way.
    expect(page.locator("#v2").get_by_role("button", name="Roll back production to version 2")).to_be_visible()
