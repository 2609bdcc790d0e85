"""The whole journey in a real browser on a real FORGE (uvicorn, demo data) with a real LIVE client process.

An editor reopens the demo set, edits a prompt (sees a syntax error, then the preview), saves and submits;
a reviewer approves; the editor publishes to production and the LIVE client returns the new text within a
second while the release page shows its acknowledgement; then a rollback goes out the same way.
Screenshots of the main pages land in docs/screenshots/ with `make screenshots`.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "anvil-demo"
SET = "/o/acme/p/support-bot/s/core/"
PROMPT = "greeting.welcome"
NEW_TEMPLATE = "Welcome back, {{ customer_name }}! How can we help you today?"
NEW_TEXT = "Welcome back, Ada! How can we help you today?"


class LiveApp:
    """The LIVE client process; ``wait_for(predicate)`` returns the first output line that satisfies it."""

    def __init__(self, forge_url: str, token: str, cache_dir: Path) -> None:
        script = Path(__file__).with_name("live_app.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), forge_url, token, str(cache_dir), PROMPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            self.log.append(raw)
            if raw.startswith("{"):
                self.lines.put(json.loads(raw))

    def wait_for(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(line):
                return line
        raise AssertionError(f"the LIVE app did not print the expected text in {timeout} s:\n{''.join(self.log)}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def live_app(forge, tmp_path):
    output = forge.cli(
        "token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "t"
    )
    token = next(word for word in output.split() if word.startswith("anvil_live_"))
    app = LiveApp(forge.url, token, tmp_path / "cache")
    yield app
    app.stop()


def sign_in(page: Page, forge, username: str) -> None:
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # Signing in lands where the user last worked, else on their only project (issue 14): any signed-in page.
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Anvil")).to_be_visible()


def test_edit_review_publish_and_roll_back(page: Page, forge, live_app, screenshot):
    first = live_app.wait_for(lambda line: line["text"], timeout=15)
    old_text = first["text"]
    assert old_text.startswith("Hi Ada")  # version 1 is live in production in the demo data

    # The editor reopens the locked demo set and edits a prompt.
    sign_in(page, forge, "editor")
    screenshot(page, "projects")
    page.goto(forge.url + "/o/acme/p/support-bot/")
    expect(page.get_by_text("1 running")).to_be_visible(timeout=10_000)  # the LIVE app checked in
    screenshot(page, "project")
    page.goto(forge.url + SET)
    page.get_by_role("button", name="Reopen for editing").click()
    expect(page.get_by_text("Reopened")).to_be_visible()
    page.get_by_role("link", name=PROMPT).click()

    template = page.get_by_role("textbox", name="Template")
    template.fill("Welcome back, {{ customer_name }")
    error = page.get_by_test_id("template-error")
    expect(error).to_contain_text("Line 1")
    screenshot(page, "editor-syntax-error")

    template.fill(NEW_TEMPLATE)
    expect(page.get_by_test_id("template-ok")).to_be_visible()
    expect(page.get_by_text("Declared but not used")).to_be_visible()  # "plan" is no longer used
    page.locator("#sample-customer_name").fill("Ada")
    expect(page.get_by_test_id("preview")).to_have_text(NEW_TEXT)
    screenshot(page, "editor")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text(f"Saved {PROMPT}.")).to_be_visible()

    page.goto(forge.url + SET)
    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_text("Submitted for review as version 3.")).to_be_visible()
    sign_out(page)

    # The reviewer looks at the changes and approves.
    sign_in(page, forge, "reviewer")
    page.goto(forge.url + SET)
    expect(page.get_by_role("button", name="Approve version 3")).to_be_visible()
    screenshot(page, "prompt-set-review")
    page.get_by_role("link", name="See what changed").click()
    expect(page.get_by_role("heading", name="Changes from v2 to v3")).to_be_visible()
    screenshot(page, "diff")
    page.go_back()
    page.get_by_label("Comment").fill("Friendlier, approved.")
    page.get_by_role("button", name="Approve version 3").click()
    expect(page.get_by_text("Approved version 3")).to_be_visible()
    sign_out(page)

    # The editor publishes to production; the LIVE app takes it within a second, the page shows the ack.
    sign_in(page, forge, "editor")
    page.goto(forge.url + SET + "versions/")
    screenshot(page, "versions")
    page.locator("#v3").get_by_role("button", name="Publish to production").click()
    expect(page.get_by_test_id("takers")).to_have_text("1")
    screenshot(page, "publish")
    clicked_at = time.time()
    page.get_by_role("button", name="Publish v3 to production").click()
    line = live_app.wait_for(lambda line: line["text"] == NEW_TEXT, timeout=5)
    heading = page.get_by_role("heading", name="Version 3 is live in production")
    published_at = float(heading.get_attribute("data-published-at"))  # when the release was committed
    latency = line["at"] - published_at
    print(
        f"LIVE app returned version 3's text {latency * 1000:.0f} ms after the release was committed "
        f"({(line['at'] - clicked_at) * 1000:.0f} ms after the click)"
    )
    assert latency < 1.0, f"the LIVE app took {latency:.2f} s after the publish"
    expect(page.get_by_test_id("ack").filter(has_text="journey-app")).to_be_visible(timeout=5_000)
    screenshot(page, "release")

    # Rollback: a new version with version 1's content, published the same way.
    page.goto(forge.url + SET + "versions/")
    page.locator("#v1").get_by_role("button", name="Roll back production to version 1").click()
    page.get_by_role("button", name="Roll back production to v1").click()
    expect(page.get_by_text("made version 4 and published it")).to_be_visible()
    live_app.wait_for(lambda line: line["text"] == old_text, timeout=5)
    expect(page.get_by_test_id("ack").filter(has_text="v4")).to_be_visible(timeout=5_000)

    page.goto(forge.url + "/o/acme/instances/")
    expect(page.get_by_text("journey-app")).to_be_visible()
    screenshot(page, "instances")
    page.goto(forge.url + "/o/acme/audit/?action=release")
    screenshot(page, "audit")


def test_owner_creates_and_revokes_a_token(page: Page, forge, screenshot):
    sign_in(page, forge, "owner")
    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Project / environment").select_option("support-bot/production")
    page.get_by_label("Name").fill("web servers")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text()
    assert token.startswith("anvil_live_")
    expect(page.locator("#connect-lines")).to_contain_text(f"anvil connect {forge.url} --token {token}")
    screenshot(page, "tokens")
    page.get_by_role("link", name="Revoke…").first.click()
    page.get_by_role("button", name="Revoke the token").click()
    expect(page.get_by_text("Applications using it are cut off now")).to_be_visible()
    expect(page.get_by_text(token)).to_have_count(0)
