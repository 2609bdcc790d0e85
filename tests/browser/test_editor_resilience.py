"""Typed text is never lost: the editor keeps it while the FORGE is away and says so, then catches up."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

EDITOR = "/o/acme/p/support-bot/s/core/prompts/greeting.welcome/"


def test_editor_keeps_typed_text_while_the_forge_restarts(page: Page, forge):
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()
    page.goto(forge.url + "/o/acme/p/support-bot/s/core/")
    page.get_by_role("button", name="Reopen for editing").click()  # the demo set starts LOCKED
    page.goto(forge.url + EDITOR)
    template = page.get_by_role("textbox", name="Template")

    forge.stop()
    template.fill("Hello {{ customer_name }}, this text was typed while the FORGE was down.")
    expect(page.locator("#htmx-problem")).to_contain_text("could not be reached")
    expect(template).to_have_value("Hello {{ customer_name }}, this text was typed while the FORGE was down.")

    forge.start()
    template.press("End")
    template.type("!")
    expect(page.get_by_test_id("template-ok")).to_be_visible()
    expect(page.locator("#htmx-problem")).to_be_hidden()
    expect(template).to_have_value("Hello {{ customer_name }}, this text was typed while the FORGE was down.!")
