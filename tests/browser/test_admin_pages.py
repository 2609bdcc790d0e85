"""Starting from empty in a real browser on a real FORGE (uvicorn): the setup link ``anvil-forge serve`` prints,
a project made from the projects page, and an invitation accepted by a new person. Each test counts what the
person does (page opens, fields filled, clicks), so a page that grows a step shows up here.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "a-long-enough-passphrase"
DEMO_PASSWORD = "anvil-demo"


class Steps:
    """The person's actions on a page, counted."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.count = 0

    def goto(self, url: str) -> None:
        self.count += 1
        self.page.goto(url)

    def fill(self, label: str, text: str) -> None:
        self.count += 1
        self.page.get_by_label(label, exact=True).fill(text)

    def click(self, locator) -> None:
        self.count += 1
        locator.click()


def _setup_link(forge) -> str:
    found = re.search(r"http://\S+/setup/[\w-]+/", forge.log())
    assert found, "serve printed no setup link:\n" + forge.log()
    return found.group(0)


def test_first_run_setup_link_then_a_second_project(page: Page, make_forge, screenshot):
    forge = make_forge(seed_demo=False)
    link = _setup_link(forge)
    steps = Steps(page)
    steps.goto(link)
    steps.fill("Username", "ada")
    steps.fill("Password (at least 8 characters)", PASSWORD)
    steps.fill("The password again", PASSWORD)
    page.locator("#id_organisation_name").fill("Acme")
    steps.count += 1
    page.locator("#id_organisation_slug").fill("acme")
    steps.count += 1
    page.locator("#id_project_name").fill("Support bot")
    steps.count += 1
    page.locator("#id_project_slug").fill("support-bot")
    steps.count += 1
    screenshot(page, "setup")
    steps.click(page.get_by_role("button", name="Create and sign in"))
    page.wait_for_url(re.compile(r".*/o/acme/p/support-bot/$"))
    expect(page.locator("h1")).to_contain_text("Support bot")
    assert steps.count == 9, steps.count  # open the link, seven fields, one click
    page.get_by_role("button", name="Settings").click()
    expect(page.locator("main table")).to_contain_text("production")
    expect(page.locator("main table")).to_contain_text("staging")  # offered, and checked by default

    # The link worked once.
    other = page.context.browser.new_context()
    spent = other.new_page()
    spent.goto(link)
    expect(spent.locator("h1")).to_contain_text("does not work")
    other.close()

    # A second project from the projects page.
    steps = Steps(page)
    steps.click(page.get_by_role("link", name="Projects", exact=True))
    steps.click(page.get_by_role("button", name="New project").or_(page.get_by_role("link", name="New project")))
    steps.fill("Name", "Checkout assistant")
    steps.fill("Short name, in addresses", "checkout")
    screenshot(page, "project-new")
    steps.click(page.get_by_role("button", name="Create project"))
    page.wait_for_url(re.compile(r".*/o/acme/p/checkout/$"))
    expect(page.locator("h1")).to_contain_text("Checkout assistant")
    assert steps.count == 5, steps.count

    # Its settings: a third environment.
    page.get_by_role("button", name="Settings").or_(page.get_by_role("link", name="Settings")).first.click()
    page.get_by_label("New environment").fill("qa")
    page.get_by_role("button", name="Add environment").click()
    expect(page.locator("main table")).to_contain_text("qa")
    screenshot(page, "project-settings")
    assert forge.log().count("This FORGE has no user yet") == 1  # printed once, at start


def test_an_admin_invites_and_a_new_person_accepts(page: Page, make_forge, screenshot, browser):
    forge = make_forge()  # demo data: acme, one user per role
    page.goto(forge.url + "/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/o/acme/.*"))

    steps = Steps(page)
    steps.click(page.get_by_role("link", name="Members", exact=True))
    page.locator("#invite-role").select_option("editor")
    steps.count += 1
    steps.click(page.get_by_role("button", name="Create invitation"))
    link = page.get_by_test_id("invite-link").inner_text().strip()
    assert "/invite/" in link
    expect(page.locator("main")).to_contain_text("Pending invitations")
    screenshot(page, "members")
    assert steps.count == 3, steps.count  # Members, role, create

    newcomer = browser.new_context()
    new_page = newcomer.new_page()
    steps = Steps(new_page)
    steps.goto(link)
    expect(new_page.locator("h1")).to_contain_text("Join")
    steps.fill("Choose a username", "grace")
    steps.fill("Choose a password (at least 8 characters)", PASSWORD)
    steps.fill("The password again", PASSWORD)
    steps.click(new_page.get_by_role("button", name="Create my account and join"))
    new_page.wait_for_url(re.compile(r".*/o/acme/$"))
    expect(new_page.locator(".user-name")).to_contain_text("grace")
    expect(new_page.locator(".user-name")).to_contain_text("Editor")
    assert steps.count == 5, steps.count  # open the link, three fields, one click

    # The link is spent; the admin sees grace among the members and no pending invitation.
    again = browser.new_context()
    spent = again.new_page()
    spent.goto(link)
    expect(spent.locator("h1")).to_contain_text("does not work")
    again.close()
    newcomer.close()
    page.get_by_role("link", name="Members", exact=True).click()  # not a reload: that would post again
    expect(page.locator("main table").first).to_contain_text("grace")
    expect(page.locator("main")).to_contain_text("No pending invitations")
