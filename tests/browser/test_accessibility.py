"""axe-core on every main page (issue 14, "Comfort"): no serious or critical violation, at desktop and phone width.

The pages are those of test_narrow_screens.py (``MAIN_PAGES``: sign-in, projects, project, set, prompt editor,
versions, a version, diff, release, publish, a rollout, instances, audit, tokens, members, account, notifications,
forges, webhooks, project and set settings, import, new project), each opened
as the demo user who would use it on a FORGE with the demo data, at 1360 px and at 390 px (where the CSS differs:
tables that scroll inside themselves, for one). axe-core is vendored for the tests only
(tests/browser/vendor/axe-core-<version>/, from npm) and injected with ``page.add_script_tag``: the FORGE never
serves it. A failure lists each violation: rule id, impact, help text and the target selectors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_narrow_screens import MAIN_PAGES, PHONE, main_pages_forge  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

AXE_VERSION = "4.14.1"
AXE = Path(__file__).parent / "vendor" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
FAILING_IMPACTS = {"serious", "critical"}
DESKTOP = {"width": 1360, "height": 860}

RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), impact: n.impact, summary: n.failureSummary})),
  }));
}"""


@pytest.fixture
def axe_page(new_context) -> Page:
    # The FORGE's Content-Security-Policy (script-src 'self') blocks the script Playwright injects, so these
    # tests only, and only to inject axe, use a context that bypasses it. test_content_security_policy.py and
    # every other browser test keep the policy on.
    context = new_context(bypass_csp=True)
    return context.new_page()


def _report(name: str, path: str, violations: list[dict]) -> str:
    lines = [f"{name} ({path}): {len(violations)} serious or critical axe violation(s)"]
    for violation in violations:
        lines.append(f"- {violation['id']} [{violation['impact']}] {violation['help']}")
        for node in violation["nodes"][:8]:
            lines.append(f"    {node['target']}  ({node['impact']})")
            summary = " ".join((node["summary"] or "").split())
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(violation["nodes"]) > 8:
            lines.append(f"    ... and {len(violation['nodes']) - 8} more")
    return "\n".join(lines)


@pytest.mark.parametrize("width", [DESKTOP["width"], PHONE["width"]], ids=["desktop", "phone"])
@pytest.mark.parametrize(("name", "username", "path"), MAIN_PAGES, ids=[name for name, _, _ in MAIN_PAGES])
def test_no_serious_or_critical_axe_violations(
    axe_page: Page,
    main_pages_forge,  # noqa: F811
    name,
    username,
    path,
    width,
):
    assert AXE.exists(), f"axe-core is not vendored at {AXE}"
    axe_page.set_viewport_size(DESKTOP if width == DESKTOP["width"] else PHONE)
    main_pages_forge.open(axe_page, username, path)
    axe_page.add_script_tag(path=str(AXE))
    violations = axe_page.evaluate(RUN_AXE)
    serious = [violation for violation in violations if violation["impact"] in FAILING_IMPACTS]
    others = [f"{violation['id']} [{violation['impact']}]" for violation in violations if violation not in serious]
    if others:
        print(f"{name}: minor or moderate axe findings (not failing): {', '.join(others)}")
    assert not serious, _report(name, path, serious)


BROKEN = """() => {
  const main = document.querySelector("main");
  main.insertAdjacentHTML("beforeend",
    '<p id="faint" style="color:#c8c8c8;background:#fff">too faint to read</p>' +
    '<img id="no-alt" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">' +
    '<button id="no-name"></button>');
}"""


def test_axe_finds_what_it_should(axe_page: Page, main_pages_forge):  # noqa: F811
    """The check itself works: axe runs on a FORGE page and catches planted serious and critical problems."""
    main_pages_forge.open(axe_page, "", "/login/")
    axe_page.add_script_tag(path=str(AXE))
    checked = axe_page.evaluate("async () => (await axe.run(document)).passes.length")
    assert checked > 10, f"axe passed only {checked} rules: did it run?"
    axe_page.evaluate(BROKEN)
    found = {violation["id"]: violation for violation in axe_page.evaluate(RUN_AXE)}
    assert found["color-contrast"]["impact"] == "serious"
    assert "#faint" in [node["target"] for node in found["color-contrast"]["nodes"]]
    assert found["image-alt"]["impact"] == "critical"
    assert found["button-name"]["impact"] == "critical"


def _assert_no_serious(page: Page, name: str) -> None:
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(RUN_AXE)
    serious = [violation for violation in violations if violation["impact"] in FAILING_IMPACTS]
    assert not serious, _report(name, page.url, serious)


def test_axe_on_pages_that_show_a_problem(axe_page: Page, main_pages_forge):  # noqa: F811
    """The error states the main pages show: a refused sign-in, a template with a syntax error in the editor."""
    main_pages_forge.open(axe_page, "", "/login/")
    axe_page.get_by_label("Username").fill("editor")
    axe_page.get_by_label("Password").fill("not the password")
    axe_page.get_by_role("button", name="Sign in").click()
    axe_page.wait_for_load_state("load")
    _assert_no_serious(axe_page, "refused sign-in")

    main_pages_forge.open(axe_page, "editor", "/o/acme/p/support-bot/s/core/prompts/greeting.welcome/")
    axe_page.get_by_role("textbox", name="Template").fill("Welcome back, {{ customer_name }")
    expect(axe_page.get_by_test_id("template-error")).to_contain_text("Line 1")
    _assert_no_serious(axe_page, "editor with a syntax error")
