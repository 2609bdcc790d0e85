"""From the prompt page of a LOCKED set: change a word, Save (the set reopens), Submit for review with a note."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
EDITOR = SET + "prompts/greeting.welcome/"


def test_edit_a_locked_set_in_place_and_submit_it_from_the_editor(page: Page, forge):
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()
    page.goto(forge.url + EDITOR)

    expect(page.get_by_test_id("reopen-note")).to_contain_text("Your first save starts a new draft")
    expect(page.get_by_role("button", name="Submit for review")).to_have_count(0)  # nothing saved since v2
    template = page.locator("#template")
    template.fill(template.input_value().replace("welcome back", "good to see you", 1))
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_text("Saved greeting.welcome.")).to_contain_text("Submit the set for review when you are done")
    expect(page.get_by_test_id("reopen-note")).to_have_count(0)  # the set is LIVE again
    page.get_by_label("Note for the reviewer").fill("Warmer greeting")
    page.get_by_role("button", name="Submit for review").click()

    expect(page.get_by_text("Submitted core for review as version 3.")).to_be_visible()
    expect(page).to_have_url(forge.url + SET + "versions/3/")
