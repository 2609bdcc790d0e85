"""The rollout page in a real browser (issue 16): an editor starts a canary from the publish page, follows it on
its page (stages, the instances on each version, both error rates), pauses, resumes and aborts it; the LIVE app
on the canary runs the new text and, after the abort, the previous text again."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_journey import live_app, sign_in  # noqa: F401 (live_app: the LIVE app fixture)

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
ELIGIBLE = (
    "from anvil_forge.distribution import rollouts; from anvil_forge.prompts.models import Environment; "
    "e = Environment.objects.get(project__slug='support-bot', slug='production'); "
    "print(len(rollouts.eligible_instances(environment_id=e.pk, set_slug='core')))"
)


def test_an_editor_runs_a_canary_from_the_publish_page_to_an_abort(page: Page, forge, live_app):  # noqa: F811
    old_text = live_app.wait_for(lambda line: line["text"], timeout=15)["text"]
    deadline = time.monotonic() + 20
    while forge.cli("manage", "shell", "-c", ELIGIBLE).strip().splitlines()[-1] != "1":
        assert time.monotonic() < deadline, "the LIVE app did not check in"
        time.sleep(0.3)
    sign_in(page, forge, "editor")
    page.goto(forge.url + SET + "versions/2/publish/production/")
    page.get_by_text("Or roll out to a share of the instances first").click()
    page.get_by_label("Stages").fill("50:3600,100")
    page.get_by_role("button", name="Start the rollout of v2").click()

    expect(page.get_by_role("heading", name="Rollout of version 2 to production")).to_be_visible()
    expect(page.locator("[data-rollout-state]")).to_have_text("Running")
    expect(page.locator('[data-stage="1"]')).to_contain_text("50%")
    expect(page.locator('[data-stage="2"]')).to_contain_text("to come")
    expect(page.locator('[data-side="canary"]')).to_be_visible()
    expect(page.locator('[data-side="baseline"]')).to_be_visible()
    new_text = live_app.wait_for(lambda line: line["text"] != old_text, timeout=10)["text"]
    # The page refreshes itself: the canary instance is shown on version 2.
    expect(page.get_by_text("version 2: 1 instance")).to_be_visible(timeout=10_000)

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("[data-rollout-state]")).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("[data-rollout-state]")).to_have_text("Running")
    page.get_by_label("Reason (optional)").fill("the answers look wrong")
    page.get_by_role("button", name="Abort and go back").click()
    expect(page.locator("[data-rollout-state]")).to_have_text("Aborted")
    expect(page.locator("[data-rollout-reason]")).to_have_text("the answers look wrong")
    expect(page.get_by_text("version 3 (a copy of version 1) was published to everyone")).to_be_visible()
    live_app.wait_for(lambda line: line["text"] == old_text, timeout=10)
    assert new_text != old_text

    page.goto(forge.url + SET + "versions/")
    expect(page.get_by_role("heading", name="Rollouts")).to_be_visible()
    expect(page.get_by_role("link", name="v2 to production")).to_be_visible()
