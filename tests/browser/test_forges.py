"""The Forges menu in a real browser: add a peer FORGE, browse it, copy a version, connect a project, lose the peer.

Two real FORGEs (uvicorn, demo data, one database each): B issues a peer token, A is driven in Chromium.
Screenshots (forges.png, forges-remote-version.png, forges-connected.png) land in docs/screenshots/ with
`make screenshots`.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "anvil-demo"


def sign_in(page: Page, forge, username: str) -> None:
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/o/acme/.*"))


def test_forges_menu_add_browse_copy_connect_and_unreachable(page: Page, make_forge, screenshot):
    forge_b = make_forge()
    forge_a = make_forge(env={"ANVIL_PEER_PRIVATE_NETWORKS": "127.0.0.0/8"})  # B is on loopback
    token = forge_b.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "peer",
                        "--name", "forge a").splitlines()[0].strip()

    sign_in(page, forge_a, "owner")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Forges").click()
    expect(page.get_by_role("heading", name="Forges", level=1)).to_be_visible()
    expect(page.get_by_text("No peer FORGEs yet.")).to_be_visible()

    # Add B as a peer: the connection test runs at once.
    page.get_by_label("Name").fill("forge-b")
    page.get_by_label("URL").fill(forge_b.url)
    page.get_by_label("Peer token").fill(token)
    page.get_by_role("button", name="Add peer").click()
    expect(page.get_by_text("accepts the token")).to_be_visible()
    expect(page.locator(".badge", has_text="healthy")).to_be_visible()
    assert token not in page.content()

    # Browse B's project, its sets and a version's prompts, rendered read-only.
    page.get_by_role("link", name="Support bot").click()
    expect(page.get_by_text("read-only").first).to_be_visible()
    page.get_by_role("link", name="v2").click()
    expect(page.get_by_text("greeting.welcome")).to_be_visible()
    expect(page.get_by_test_id("remote-digest")).to_contain_text("sha256:")
    screenshot(page, "forges-remote-version")

    # Copy it into A's project for local review.
    page.get_by_label("Set name for a first copy (optional)").fill("core-from-b")
    page.get_by_role("button", name="Copy into my project").click()
    expect(page.get_by_text("Copied version 2 of core from forge-b")).to_be_visible()

    # Connect B's project as a read-only reference.
    page.goto(forge_a.url + "/forges/acme/peers/forge-b/p/acme/support-bot/")
    page.get_by_role("button", name="Connect as a read-only reference").click()
    reference = page.get_by_test_id("reference")
    expect(reference.get_by_text("read-only").first).to_be_visible()
    expect(reference.get_by_text("from forge-b").first).to_be_visible()
    expect(reference.get_by_text("greeting.welcome").first).to_be_visible()
    screenshot(page, "forges-connected")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Forges").click()
    expect(page.locator("[data-peer='forge-b'] .badge", has_text="healthy")).to_be_visible()
    expect(page.locator("[data-reference='forge-b:acme/support-bot']")).to_be_visible()
    expect(page.get_by_role("link", name="support-bot/core-from-b")).to_be_visible()
    screenshot(page, "forges")

    # B goes away: the connection test says so and the connected project shows its last copy.
    forge_b.stop()
    page.locator("[data-peer='forge-b']").get_by_role("button", name="Test connection").click()
    expect(page.locator("[data-peer='forge-b'] .badge", has_text="unreachable")).to_be_visible()
    page.locator("[data-reference='forge-b:acme/support-bot'] a").first.click()
    expect(page.get_by_test_id("stale")).to_contain_text("could not be reached")
    expect(page.get_by_text("greeting.welcome").first).to_be_visible()
