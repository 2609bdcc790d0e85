"""Scheduled publishing in a real browser in another time zone: "Publish at…" is the viewer's wall-clock time,
the FORGE keeps UTC, and the versions page shows it back in the viewer's zone, with Cancel.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.test_journey import sign_in

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"


def test_publish_at_is_read_in_the_browsers_time_zone_and_shown_back_in_it(browser: Browser, forge) -> None:
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-GB", viewport={"width": 1360, "height": 860})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Security Policy" in message.text else None)
    try:
        sign_in(page, forge, "editor")
        page.goto(forge.url + SET + "versions/2/publish/production/")
        expect(page.locator("form[data-schedule-form] [data-time-zone]")).to_have_text(
            re.compile(r"Asia/(Kolkata|Calcutta)")
        )
        page.get_by_label("Publish at…").fill("2027-03-01T09:30")
        page.get_by_role("button", name="Schedule v2 for production").click()

        # Kolkata is UTC+05:30: 09:30 there is 04:00 UTC.
        expect(page.get_by_text("will be published to production at 2027-03-01 04:00 UTC")).to_be_visible()
        row = page.get_by_test_id("scheduled-pending")
        expect(row.locator("time")).to_have_attribute("datetime", "2027-03-01T04:00:00+00:00")
        expect(row.locator("time")).to_contain_text("09:30")
        row.get_by_role("button", name="Cancel").click()
        expect(page.get_by_test_id("scheduled-cancelled")).to_be_visible()
        assert violations == []
    finally:
        context.close()
