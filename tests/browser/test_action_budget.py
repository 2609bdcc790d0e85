"""The Context Engineer's daily loop counted in actions (issue 14), in a real browser on a real FORGE.

An action is what a person does to move on: a click, or Enter to send a form. Typing into a field is not counted
(the words are the work, not the steps). Two journeys, each from signing in:

- **to submit**: sign in, change one word of one prompt of the set they worked on last, submit it for review.
  Budget: 4 (the issue measured 8 before: projects list, project, set, "Reopen for editing", prompt, Save,
  back to the set, Submit).
- **to publish**: the reviewer signs in, opens the waiting review from the navigation, approves; the editor signs in
  (landing on the set) and publishes the approved version to production, until the release page shows it.
  Budget: 6 (sign in, review, approve; sign in, publish, confirm).

The counts land in ``bench/results/journey.json`` (``actions_to_submit``, ``actions_to_publish``).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from bench.journey import record_results

pytestmark = pytest.mark.browser

PASSWORD = "anvil-demo"
SET = "/o/acme/p/support-bot/s/core/"
PROMPT = "greeting.welcome"
SUBMIT_BUDGET = 4
PUBLISH_BUDGET = 6


class Actions:
    """Counts the person's actions; every click and Enter of the journey goes through it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0
        self.steps: list[str] = []

    def click(self, target: Locator, what: str) -> None:
        target.click()
        self._note(f"click {what}")

    def enter(self, field: Locator, what: str) -> None:
        field.press("Enter")
        self._note(f"Enter in {what}")

    def _note(self, step: str) -> None:
        self.count += 1
        self.steps.append(step)


def sign_in(page: Page, actions: Actions, forge, username: str) -> None:
    page.goto(forge.url + "/login/")  # opening the FORGE's address: where every day starts, not counted
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    actions.enter(page.get_by_label("Password"), "the password")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Anvil")).to_be_visible()


def test_change_a_word_and_submit_within_four_actions_then_approve_and_publish(page: Page, forge):
    # Yesterday: the editor worked on the set (opened one of its prompts). Not counted.
    setup = Actions(page)
    sign_in(page, setup, forge, "editor")
    page.goto(forge.url + SET + f"prompts/{PROMPT}/")
    expect(page.locator("#template")).to_be_visible()
    sign_out(page)

    # Today, to submit.
    submit = Actions(page)
    sign_in(page, submit, forge, "editor")
    expect(page).to_have_url(re.compile(re.escape(SET) + "$"), timeout=5000)  # lands on the set worked on last
    submit.click(page.get_by_role("link", name=PROMPT, exact=True).first, "the prompt")
    template = page.locator("#template")
    template.fill(template.input_value().replace("welcome back", "good to see you", 1))
    submit.click(page.get_by_role("button", name="Save", exact=True), "Save")
    expect(page.get_by_text(f"Saved {PROMPT}.")).to_be_visible()
    submit.click(page.get_by_role("button", name="Submit for review"), "Submit for review")
    heading = re.compile(r"Submitted core for review as version (\d+)\.")
    expect(page.get_by_text(heading)).to_be_visible()
    number = int(heading.search(page.get_by_text(heading).inner_text()).group(1))
    assert submit.count <= SUBMIT_BUDGET, f"{submit.count} actions to submit (budget {SUBMIT_BUDGET}): {submit.steps}"
    sign_out(page)

    # To publish: the reviewer approves from the inbox, the editor publishes to production.
    publish = Actions(page)
    sign_in(page, publish, forge, "reviewer")
    nav = page.get_by_role("navigation", name="Main")
    # One review waits: the navigation's link opens it.
    publish.click(nav.get_by_role("link", name=re.compile("Waiting for your review")), "Waiting for your review")
    publish.click(page.get_by_role("button", name="Approve"), "Approve")
    expect(page.get_by_text(re.compile(f"Approved version {number}"))).to_be_visible()
    sign_out(page)

    sign_in(page, publish, forge, "editor")
    # Signing in lands on the set, which offers publishing the approved version.
    publish.click(page.get_by_role("button", name=f"Publish v{number} to production"), "Publish to production")
    expect(page).to_have_url(re.compile(f"/versions/{number}/publish/production/$"))
    publish.click(page.get_by_role("button", name=f"Publish v{number} to production"), "the confirmation")
    expect(page.get_by_role("heading", name=f"Version {number} is live in production")).to_be_visible()
    assert publish.count <= PUBLISH_BUDGET, f"{publish.count} actions to publish: {publish.steps}"

    record_results({"actions_to_submit": submit.count, "actions_to_publish": publish.count})
