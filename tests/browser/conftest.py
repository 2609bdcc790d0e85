"""Playwright driving Debian's Chromium (never a downloaded browser): see docs in /work/shared/browser-tests.md.

The browser tests skip, saying why, when Chromium is not installed (``.ci/run`` installs it with apt-get).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in the main thread

CHROMIUM = os.environ.get("ANVIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    # keep the browser on loopback: without this Chromium looks up Google hosts at start
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
    "--disable-quic",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# `make screenshots` points this at docs/screenshots/ (the README's images); an ordinary test run keeps its
# screenshots in a temporary directory, so running the tests leaves the working tree as it was.
SCREENSHOTS_DIR = os.environ.get("ANVIL_SCREENSHOT_DIR")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(
        reason=f"Chromium not found at {CHROMIUM}: install Debian's with "
        "`apt-get install -y chromium fonts-liberation` (or set ANVIL_CHROMIUM); never `playwright install`"
    )
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1360, "height": 860}, "locale": "en-GB"}


@pytest.fixture
def screenshot(tmp_path_factory: pytest.TempPathFactory):
    """``screenshot(page, "name")`` saves name.png in ``ANVIL_SCREENSHOT_DIR`` (else a temporary directory)."""
    directory = Path(SCREENSHOTS_DIR) if SCREENSHOTS_DIR else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(directory / f"{name}.png"), full_page=True, animations="disabled")

    return take


# Every page the browser tests open must obey the FORGE's Content-Security-Policy: Chromium logs each
# violation to the console, and the listener below reports the 'securitypolicyviolation' events as well.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("csp-violation: " + event.violatedDirective + " blocked " + (event.blockedURI || "inline")
                + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


@pytest.fixture
def csp_violations(page) -> list[str]:
    """The CSP violations ``page`` meets, as they happen (a test expecting one clears the list)."""
    found: list[str] = []
    page.add_init_script(_REPORT_CSP_VIOLATIONS)

    def listen(message) -> None:
        if message.text.startswith("csp-violation: ") or "Content Security Policy" in message.text:
            found.append(f"{page.url}: {message.text}")

    page.on("console", listen)
    return found


@pytest.fixture(autouse=True)
def _no_csp_violations(request: pytest.FixtureRequest):
    """Fails any browser test whose ``page`` met a CSP violation (an inline script or style, eval...)."""
    if "page" not in request.fixturenames:
        yield
        return
    found = request.getfixturevalue("csp_violations")
    yield
    assert not found, "Content-Security-Policy violations:\n" + "\n".join(found)
