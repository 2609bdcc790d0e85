"""Issue 14's "nothing lost" rows, in Chromium: signed out in another tab while typing, Save after the session
ended, a draft kept over a reload, and the second save after a conflict. Plus the editor's keys."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
EDITOR = SET + "prompts/greeting.welcome/"
PASSWORD = "anvil-demo"


def sign_in(page: Page, url: str, username: str = "owner") -> None:
    page.goto(url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Username")).to_be_visible()


def open_editor(page: Page, url: str) -> None:
    page.goto(url + EDITOR)
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_visible()  # the LOCKED demo set edits in place


def test_signed_out_in_another_tab_keep_typing_shows_a_notice_and_keeps_focus_and_text(
    page: Page, context: BrowserContext, forge
):
    sign_in(page, forge.url)
    open_editor(page, forge.url)
    other = context.new_page()
    other.goto(forge.url + SET)
    sign_out(other)

    template = page.locator("#template")
    template.click()
    template.press("End")
    template.type(" Typed after signing out.")
    problem = page.locator("#htmx-problem")
    expect(problem).to_contain_text("You were signed out")
    expect(problem.get_by_role("link", name="Sign in again in a new tab")).to_be_visible()
    expect(template).to_be_focused()
    expect(template).to_have_value(re.compile(r"Typed after signing out\.$"))
    expect(page.get_by_label("Username")).to_have_count(0)  # no sign-in page inside the preview
    template.type(" More.")
    expect(template).to_be_focused()
    expect(template).to_have_value(re.compile(r"Typed after signing out\. More\.$"))

    # Signing in again elsewhere: the live check works again here, and Save keeps everything typed.
    sign_in(other, forge.url)
    template.type("!")
    expect(page.get_by_test_id("template-ok")).to_be_visible()
    expect(problem).to_be_hidden()
    page.keyboard.press("Control+s")
    expect(page.get_by_text("Saved greeting.welcome.")).to_be_visible()
    expect(page.locator("#template")).to_have_value(re.compile(r"Typed after signing out\. More\.!$"))


def test_save_after_the_session_ended_keeps_the_text_through_sign_in_and_saves_it(
    page: Page, context: BrowserContext, forge
):
    sign_in(page, forge.url)
    open_editor(page, forge.url)
    typed = "Hello {{ customer_name }}, typed before the session ended."
    page.locator("#template").fill(typed)
    other = context.new_page()
    other.goto(forge.url + SET)
    sign_out(other)
    other.close()

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_label("Username")).to_be_visible()  # the FORGE asks to sign in
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(forge.url + EDITOR)
    expect(page.locator("#template")).to_have_value(typed)
    expect(page.locator("#draft-offer")).to_contain_text("did not reach the FORGE")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved greeting.welcome.")).to_be_visible()
    page.reload()
    expect(page.locator("#template")).to_have_value(typed)
    expect(page.locator("#draft-offer")).to_be_hidden()


def test_a_draft_survives_a_reload_and_is_offered_back(page: Page, forge):
    sign_in(page, forge.url)
    open_editor(page, forge.url)
    original = page.locator("#template").input_value()
    page.locator("#template").fill("Draft {{ customer_name }} kept in the browser")
    page.locator("#description").fill("A kept description")
    page.wait_for_timeout(400)  # the draft is written 200 ms after typing stops
    page.on("dialog", lambda dialog: dialog.accept())  # the leave guard asks first
    page.reload()

    offer = page.locator("#draft-offer")
    expect(offer).to_contain_text(re.compile(r"Unsaved text from \d\d:\d\d was kept in this browser"))
    expect(page.locator("#template")).to_have_value(original)
    page.get_by_test_id("draft-restore").click()
    expect(page.locator("#template")).to_have_value("Draft {{ customer_name }} kept in the browser")
    expect(page.locator("#description")).to_have_value("A kept description")
    expect(offer).to_be_hidden()

    page.reload()
    page.get_by_test_id("draft-discard").click()
    expect(offer).to_be_hidden()
    page.reload()
    expect(offer).to_be_hidden()
    expect(page.locator("#template")).to_have_value(original)


def test_second_save_after_a_conflict_never_overwrites_silently(page: Page, browser: Browser, forge):
    sign_in(page, forge.url, "owner")
    open_editor(page, forge.url)
    theirs_context = browser.new_context()
    try:
        theirs = theirs_context.new_page()
        sign_in(theirs, forge.url, "editor")
        open_editor(theirs, forge.url)
        theirs.locator("#template").fill("Theirs: hello {{ customer_name }}")
        theirs.get_by_role("button", name="Save", exact=True).click()
        expect(theirs.get_by_text("Saved greeting.welcome.")).to_be_visible()
    finally:
        theirs_context.close()

    page.locator("#template").fill("Mine: hello {{ customer_name }}")
    page.get_by_role("button", name="Save", exact=True).click()
    conflict = page.locator("#save-error")
    expect(conflict).to_contain_text("Not saved: editor saved this prompt")
    expect(page.get_by_test_id("conflict-theirs")).to_contain_text("Theirs: hello")
    expect(page.get_by_test_id("conflict-yours")).to_contain_text("Mine: hello")
    expect(page.get_by_test_id("conflict-base")).to_contain_text("{{ customer_name }}")
    expect(page.locator("#template")).to_have_value("Mine: hello {{ customer_name }}")

    page.get_by_role("button", name="Save", exact=True).click()  # a plain second Save
    expect(conflict).to_contain_text("Not saved: editor saved this prompt")
    expect(page.get_by_test_id("conflict-theirs")).to_contain_text("Theirs: hello")

    page.get_by_role("button", name="Replace editor's change with mine").click()
    expect(page.get_by_text("Saved greeting.welcome.")).to_be_visible()
    expect(page.locator("#template")).to_have_value("Mine: hello {{ customer_name }}")


def test_editor_keys_save_refresh_indent_and_leave(page: Page, forge):
    sign_in(page, forge.url)
    open_editor(page, forge.url)
    template = page.locator("#template")
    template.fill("Hi {{ customer_name }}")
    template.press("End")
    template.press("Tab")
    expect(template).to_be_focused()
    expect(template).to_have_value("Hi {{ customer_name }}  ")
    template.press("Escape")
    template.press("Tab")
    expect(template).not_to_be_focused()
    expect(template).to_have_value("Hi {{ customer_name }}  ")

    with page.expect_request(re.compile(r"/check/$")):
        page.locator("#description").press("Control+Enter")
    page.locator("#description").press("Control+s")
    expect(page.get_by_text("Saved greeting.welcome.")).to_be_visible()
    expect(page.locator("#template")).to_have_value("Hi {{ customer_name }}  ")


def test_a_draft_restored_over_a_newer_revision_meets_the_conflict_view(page: Page, browser: Browser, forge):
    sign_in(page, forge.url, "owner")
    open_editor(page, forge.url)
    page.locator("#template").fill("Draft {{ customer_name }} from an older revision")
    page.wait_for_timeout(400)
    theirs_context = browser.new_context()
    try:
        theirs = theirs_context.new_page()
        sign_in(theirs, forge.url, "editor")
        open_editor(theirs, forge.url)
        theirs.locator("#template").fill("Theirs meanwhile {{ customer_name }}")
        theirs.get_by_role("button", name="Save", exact=True).click()
        expect(theirs.get_by_text("Saved greeting.welcome.")).to_be_visible()
    finally:
        theirs_context.close()

    page.on("dialog", lambda dialog: dialog.accept())
    page.reload()
    expect(page.locator("#draft-offer")).to_contain_text("the prompt is now at revision")
    page.get_by_test_id("draft-restore").click()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#save-error")).to_contain_text("Not saved: editor saved this prompt")
    expect(page.get_by_test_id("conflict-theirs")).to_contain_text("Theirs meanwhile")
    expect(page.locator("#template")).to_have_value("Draft {{ customer_name }} from an older revision")
