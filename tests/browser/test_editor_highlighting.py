"""The template editor highlights Jinja (Prism, vendored) while the real <textarea name="template"> stays the
field that is typed in and posted."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

EDITOR = "/o/acme/p/support-bot/s/core/prompts/greeting.welcome/"


def test_jinja_is_highlighted_under_the_real_textarea(page: Page, forge):
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()
    page.goto(forge.url + EDITOR)

    template = page.get_by_role("textbox", name="Template")
    expect(template).to_have_attribute("name", "template")
    assert template.evaluate("el => el.tagName === 'TEXTAREA' && el.form.id === 'editor-form'")
    highlight = page.locator(".code-highlight")
    expect(highlight).to_have_attribute("aria-hidden", "true")
    template.fill("Hi {{ customer_name|title }} {# note #}{% if plan %}!{% endif %}")
    expect(highlight.locator(".token.variable", has_text="customer_name")).to_be_visible()
    expect(highlight.locator(".token.comment")).to_have_text("{# note #}")
    expect(highlight.locator(".token.keyword", has_text="endif")).to_be_visible()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved greeting.welcome.")).to_be_visible()
    expect(template).to_have_value("Hi {{ customer_name|title }} {# note #}{% if plan %}!{% endif %}")
