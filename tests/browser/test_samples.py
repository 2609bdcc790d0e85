"""Test cases in a browser: an editor adds a sample with a failing check, sees it fail, submits; the reviewer
sees the failure and can approve only by ticking the override and saying why."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
PROMPT = SET + "prompts/greeting.welcome/"


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()


def test_a_failing_test_case_shows_in_the_editor_and_the_review_needs_an_override(page: Page, forge, screenshot):
    sign_in(page, forge.url, "editor")
    page.goto(forge.url + SET)
    reopen = page.get_by_role("button", name="Reopen for editing")
    if reopen.count():  # the demo set starts LOCKED
        reopen.click()
    page.goto(forge.url + PROMPT)

    page.get_by_role("button", name="Add a test case").click()
    page.locator('[name="case-0-name"]').fill("ada on pro")
    page.locator('[name="case-0-value-customer_name"]').fill("Ada")
    page.locator('[name="case-0-value-plan"]').fill("pro")
    page.locator('[name="case-0-check-0-kind"]').select_option("contains")
    page.locator('[name="case-0-check-0-value"]').fill("Goodbye")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_text("Saved greeting.welcome. 1 of 1 test case fails.")).to_be_visible()
    case = page.get_by_test_id("test-case")
    expect(case.get_by_test_id("case-result")).to_have_text("fails")
    expect(case.get_by_test_id("check-result")).to_contain_text("not found in the rendered text")
    # The preview starts from the first test case.
    expect(page.get_by_test_id("preview")).to_contain_text("Ada, welcome back! Thanks for being a Pro customer.")
    screenshot(page, "editor-test-cases")

    page.goto(forge.url + SET)
    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_text("Test cases: 0 pass, 1 fail.")).to_be_visible()

    page.context.clear_cookies()
    sign_in(page, forge.url, "reviewer")
    page.goto(forge.url + SET)
    results = page.get_by_test_id("test-results")
    expect(results.get_by_test_id("tests-summary")).to_have_text("1 failing")
    expect(results.get_by_test_id("test-result")).to_contain_text("greeting.welcome")
    expect(results.get_by_test_id("test-result")).to_contain_text("ada on pro")
    expect(results.get_by_test_id("test-result")).to_contain_text("contains 'Goodbye'")
    screenshot(page, "review-test-cases")

    approve = page.get_by_role("button", name="Approve version")
    approve.click()
    expect(page.get_by_role("alert")).to_contain_text("failing test cases (greeting.welcome: ada on pro)")
    page.get_by_label("Approve despite 1 failing test case").check()
    page.get_by_role("button", name="Approve version").click()
    expect(page.get_by_role("alert")).to_contain_text("needs a comment")
    page.get_by_role("textbox", name="Comment").fill("Goodbye is wrong: the check predates the new greeting.")
    page.get_by_role("button", name="Approve version").click()

    expect(page.get_by_text("it is ready to publish")).to_be_visible()
    page.goto(forge.url + "/o/acme/audit/")
    expect(page.get_by_text("prompt_set.approve_override").first).to_be_visible()
