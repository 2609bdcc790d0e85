"""Every main page at phone width (390 x 844) on a real FORGE with the demo data (issue 14, "Comfort").

For each page, as the demo user who would use it: the page answers 200, nothing scrolls sideways
(``document.documentElement.scrollWidth <= window.innerWidth``, and not by hiding the overflow of the page
itself), and the page's h1 lies fully inside the viewport, its text not cut; the prompt editor is one column.
Wide tables scroll inside their own box instead, or wrap (anvil.css). A screenshot of each page is kept
(``ANVIL_NARROW_SCREENSHOT_DIR``, else a temporary directory) for a person to look at.

``MAIN_PAGES`` and the ``main_pages_forge`` fixture are shared with test_accessibility.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.forge_process import DEMO_PASSWORD, ForgeProcess, new_database

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"
PHONE = {"width": 390, "height": 844}

# (name, demo user, path); "{rollout}" is filled with the rollout the fixture starts, "" means signed out.
MAIN_PAGES = [
    ("sign-in", "", "/login/"),
    ("projects", "editor", "/o/acme/"),
    ("project", "editor", "/o/acme/p/support-bot/"),
    ("set", "editor", SET),
    ("prompt-editor", "editor", SET + "prompts/greeting.welcome/"),
    ("versions", "editor", SET + "versions/"),
    ("version", "reviewer", SET + "versions/2/"),
    ("diff", "reviewer", SET + "diff/?a=1&b=2"),
    ("release", "editor", SET + "releases/1/"),
    ("publish", "editor", SET + "versions/2/publish/production/"),
    ("rollout", "editor", SET + "rollouts/{rollout}/"),
    ("instances", "editor", "/o/acme/instances/"),
    ("audit", "owner", "/o/acme/audit/"),
    ("tokens", "owner", "/o/acme/tokens/"),
    ("members", "admin", "/o/acme/members/"),
    ("account", "editor", "/account/"),
    ("notifications", "reviewer", "/notifications/"),
    ("forges", "admin", "/forges/acme/"),
    ("webhooks", "admin", "/o/acme/webhooks/"),
    ("project-settings", "admin", "/o/acme/p/support-bot/settings/"),
    ("set-settings", "admin", SET + "settings/"),
    ("import", "editor", SET + "import/"),
    ("new-project", "admin", "/o/acme/projects/new/"),
]


class MainPagesForge:
    """One FORGE with the demo data for a module's tests, a signed-in cookie jar per demo user, a rollout."""

    def __init__(self, forge: ForgeProcess, browser: Browser) -> None:
        self.forge = forge
        self.url = forge.url
        self._browser = browser
        self._cookies: dict[str, list] = {}
        self.rollout_id = self._start_rollout()
        forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "live", "--name", "w")

    def cookies(self, username: str) -> list:
        if username not in self._cookies:
            context = self._browser.new_context()
            page = context.new_page()
            page.goto(self.url + "/login/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            self._cookies[username] = context.cookies()
            context.close()
        return self._cookies[username]

    def _start_rollout(self) -> int:
        """A canary of version 2 to production, so the rollout page has something to show."""
        context = self._browser.new_context()
        context.add_cookies(self.cookies("editor"))
        page = context.new_page()
        page.goto(self.url + SET + "versions/2/publish/production/")
        page.get_by_text("Or roll out to a share of the instances first").click()
        page.get_by_label("Stages").fill("50:3600,100")
        page.get_by_role("button", name="Start the rollout of v2").click()
        expect(page.get_by_role("heading", name="Rollout of version 2 to production")).to_be_visible()
        rollout_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
        context.close()
        return rollout_id

    def open(self, page: Page, username: str, path: str) -> None:
        """Signs ``page`` in as ``username`` (or leaves it signed out) and opens ``path``; asserts a 200."""
        if username:
            page.context.add_cookies(self.cookies(username))
        response = page.goto(self.url + path.format(rollout=self.rollout_id))
        assert response is not None and response.status == 200, f"{path}: {response and response.status}"
        page.wait_for_load_state("load")
        # htmx fragments that load with the page (previews, counts) must be in before anything is measured
        expect(page.locator(".htmx-request")).to_have_count(0)


@pytest.fixture(scope="module")
def main_pages_forge(tmp_path_factory: pytest.TempPathFactory, browser: Browser):
    data_dir = tmp_path_factory.mktemp("forge")
    forge = ForgeProcess(data_dir=data_dir, database_url=new_database(data_dir, seed_demo=True))
    forge.start()
    try:
        yield MainPagesForge(forge, browser)
    finally:
        forge.stop()
        forge.drop_database()


@pytest.fixture
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": PHONE, "device_scale_factor": 1}


@pytest.fixture(scope="module")
def narrow_screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = os.environ.get("ANVIL_NARROW_SCREENSHOT_DIR")
    path = Path(directory) if directory else tmp_path_factory.mktemp("narrow")
    path.mkdir(parents=True, exist_ok=True)
    return path


MEASURE = """() => {
  const html = document.documentElement, body = document.body;
  const h1 = document.querySelector("main h1") || document.querySelector("h1");
  const box = h1 && h1.getBoundingClientRect();
  const wide = [];
  for (const element of document.querySelectorAll("body *")) {
    const r = element.getBoundingClientRect();
    if (r.width && r.right > window.innerWidth + 0.5 && getComputedStyle(element).position !== "fixed") {
      let clipped = false;  // inside a box that scrolls or clips sideways: fine
      for (let up = element.parentElement; up && up !== body; up = up.parentElement) {
        const overflow = getComputedStyle(up).overflowX;
        if (overflow !== "visible") { clipped = true; break; }
      }
      const classes = String(element.className || "").trim().replace(/\\s+/g, ".");
      const name = element.tagName.toLowerCase() + (classes ? "." + classes : "");
      if (!clipped) wide.push(name + " right=" + Math.round(r.right));
    }
  }
  return {
    scrollWidth: html.scrollWidth,
    innerWidth: window.innerWidth,
    overflowX: [getComputedStyle(html).overflowX, getComputedStyle(body).overflowX],
    h1: h1 && {left: box.left, right: box.right, top: box.top, width: box.width, height: box.height,
               scrollWidth: h1.scrollWidth, clientWidth: h1.clientWidth, text: h1.textContent.trim()},
    wide: wide.slice(0, 12),
  };
}"""


@pytest.mark.parametrize(("name", "username", "path"), MAIN_PAGES, ids=[name for name, _, _ in MAIN_PAGES])
def test_no_sideways_scroll_at_390_px(page: Page, main_pages_forge, narrow_screenshots, name, username, path):
    main_pages_forge.open(page, username, path)
    page.screenshot(path=str(narrow_screenshots / f"narrow-{name}.png"), full_page=True, animations="disabled")
    found = page.evaluate(MEASURE)
    assert found["innerWidth"] == PHONE["width"]
    # the page may not pass by hiding what sticks out
    assert found["overflowX"] == ["visible", "visible"], f"{name}: html/body overflow-x is {found['overflowX']}"
    assert found["scrollWidth"] <= found["innerWidth"], (
        f"{name} scrolls sideways: {found['scrollWidth']} px wide in a {found['innerWidth']} px viewport; "
        f"sticking out: {found['wide']}"
    )
    h1 = found["h1"]
    assert h1, f"{name} has no h1"
    assert h1["width"] > 0 and h1["height"] > 0, f"{name}: the h1 is not shown"
    assert h1["left"] >= 0 and h1["right"] <= found["innerWidth"], f"{name}: the h1 {h1['text']!r} is cut: {h1}"
    assert h1["scrollWidth"] <= h1["clientWidth"] + 1, f"{name}: the h1 {h1['text']!r} overflows its box: {h1}"
    if name == "prompt-editor":  # template and preview one above the other, each the width of the screen
        columns = page.locator(".editor-grid").evaluate("grid => getComputedStyle(grid).gridTemplateColumns")
        assert len(columns.split()) == 1, f"the editor keeps {columns} columns at 390 px"
