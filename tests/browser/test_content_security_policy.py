"""The FORGE's pages under their Content-Security-Policy in Chromium: htmx still works, nothing is blocked.

Every browser test fails on a CSP violation (``conftest.py``); this one walks the pages an editor uses,
with the htmx parts (the editor's live check and preview, the prompt search, the release page's polling),
and checks that the policy really is in force: the browser blocks an inline script put into the page.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
EDITOR = SET + "prompts/greeting.welcome/"


def sign_in(page: Page, forge, username: str) -> None:
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()
    # Signing in lands where the user last worked, else on their only project (issue 14): any signed-in page.
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_pages_and_htmx_work_under_the_policy(page: Page, forge):
    answer = page.goto(forge.url + "/login/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe" not in policy
    sign_in(page, forge, "owner")

    for path in ["/o/acme/", "/o/acme/p/support-bot/", SET + "versions/", SET + "diff/?a=1&b=2", "/o/acme/tokens/",
                 "/o/acme/instances/", "/o/acme/audit/", "/forges/", "/no/such/page/"]:
        page.goto(forge.url + path)
        assert page.evaluate("document.querySelectorAll('style').length") == 0, path  # no style element

    # htmx's search on the set page (hx-get on input).
    page.goto(forge.url + SET)
    page.get_by_role("button", name="Reopen for editing").click()  # the demo set starts LOCKED
    rows = page.locator("#prompt-rows")
    page.get_by_label("Search prompts").fill("greeting")
    expect(rows).to_contain_text("greeting.welcome")
    expect(rows).not_to_contain_text("errors.")

    # The editor: the live check (hx-post on input) and the preview (hx-post on the sample fields).
    page.goto(forge.url + EDITOR)
    template = page.get_by_role("textbox", name="Template")
    template.fill("Hello {{ customer_name }")
    expect(page.get_by_test_id("template-error")).to_contain_text("Line 1")
    template.fill("Hello {{ customer_name }}, under a strict policy.")
    expect(page.get_by_test_id("template-ok")).to_be_visible()
    page.locator("#sample-customer_name").fill("Ada")
    expect(page.get_by_test_id("preview")).to_have_text("Hello Ada, under a strict policy.")
    assert page.evaluate("document.querySelectorAll('style').length") == 0  # htmx injected no indicator styles

    # A refused action's error page: "Go back" is a link (data-back), no longer a javascript: address.
    page.goto(forge.url + "/o/acme/p/support-bot/s/no-such-set/")
    expect(page.get_by_role("link", name="Go back")).to_have_attribute("data-back", "")


def test_the_policy_is_enforced_and_a_violation_is_noticed(page: Page, forge, csp_violations):
    """The browser, not only the header: an inline script is refused, and the check every test runs sees it."""
    page.goto(forge.url + "/login/")
    page.evaluate(
        """() => { const s = document.createElement("script"); s.textContent = "window.ran = true";
                   document.head.appendChild(s); }"""
    )
    assert page.evaluate("window.ran === undefined")
    expect(page.locator("body")).to_be_visible()
    page.wait_for_timeout(200)  # the console message arrives asynchronously
    assert any("script-src" in violation for violation in csp_violations), csp_violations
    csp_violations.clear()  # expected here; any other test with a violation fails
