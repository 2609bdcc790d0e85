"""A team's first day, from an empty data directory, through the interface only (issue 13's "done means").

The setup link ``anvil-forge serve`` prints makes the first owner, her organisation and project; she starts a
second organisation, adds a third environment, and invites an editor and a reviewer, who accept in their own
browsers. The editor makes a set and imports 40 prompts from files, then submits; the reviewer approves; the
editor publishes to production. The owner makes a live token on the tokens page, and a LIVE client in another
process receives all 40 prompts with it. The version's Download, imported again, changes nothing. No Django
shell, no demo data, no command but ``serve`` (and the dry-run import that checks the export).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "a-long-enough-passphrase"
PROMPTS = 40

CLIENT = """
import json, sys
import anvil_client

client = anvil_client.Client(forge_url=sys.argv[1], token=sys.argv[2], cache_dir=sys.argv[3], startup_timeout=10)
print(json.dumps({"ids": client.ids(), "greeting": client.prompt("team.prompt_07", name="Ada")}))
client.close()
"""


def write_prompt_files(directory: Path) -> list[Path]:
    directory.mkdir()
    files = []
    for number in range(PROMPTS):
        path = directory / f"team.prompt_{number:02d}.j2"
        path.write_text(
            "---\n"
            f"description: Prompt number {number}\n"
            "parameters:\n"
            "  name: string\n"
            "---\n"
            f"Hello {{{{ name }}}}, this is prompt {number}.\n"
        )
        files.append(path)
    return files


def sign_up(browser: Browser, link: str, username: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(link)
    page.get_by_label("Choose a username").fill(username)
    page.get_by_label("Choose a password (at least 8 characters)").fill(PASSWORD)
    page.get_by_label("The password again").fill(PASSWORD)
    page.get_by_role("button", name="Create my account and join").click()
    page.wait_for_url(re.compile(r".*/o/acme/$"))
    return page


def invite(page: Page, forge_url: str, role: str) -> str:
    page.goto(forge_url + "/o/acme/members/")
    page.locator("#invite-role").select_option(role)
    page.get_by_role("button", name="Create invitation").click()
    link = page.get_by_test_id("invite-link").inner_text().strip()
    assert "/invite/" in link, link
    return link


def test_a_team_goes_from_an_empty_forge_to_prompts_in_production(
    page: Page, browser: Browser, make_forge, tmp_path: Path
) -> None:
    forge = make_forge(seed_demo=False)
    found = re.search(r"http://\S+/setup/[\w-]+/", forge.log())
    assert found, "serve printed no setup link:\n" + forge.log()

    # The first owner, her organisation and first project.
    page.goto(found.group(0))
    page.get_by_label("Username", exact=True).fill("ada")
    page.get_by_label("Password (at least 8 characters)", exact=True).fill(PASSWORD)
    page.get_by_label("The password again", exact=True).fill(PASSWORD)
    page.locator("#id_organisation_name").fill("Acme")
    page.locator("#id_organisation_slug").fill("acme")
    page.locator("#id_project_name").fill("Support bot")
    page.locator("#id_project_slug").fill("support-bot")
    page.get_by_role("button", name="Create and sign in").click()
    page.wait_for_url(re.compile(r".*/o/acme/p/support-bot/$"))

    # A second organisation, then back to the first one's project settings: a third environment.
    page.goto(forge.url + "/orgs/new/")
    page.get_by_label("Name", exact=True).fill("Beta labs")
    page.get_by_label("Short name, in addresses").fill("beta")
    page.get_by_role("button", name="Create organisation").click()
    page.wait_for_url(re.compile(r".*/o/beta/.*"))
    page.goto(forge.url + "/o/acme/p/support-bot/settings/")
    page.get_by_label("New environment").fill("canary")
    page.get_by_role("button", name="Add environment").click()
    for environment in ("production", "staging", "canary"):
        expect(page.locator("main table").first).to_contain_text(environment)

    # An editor and a reviewer, invited and accepting in their own browsers.
    grace = sign_up(browser, invite(page, forge.url, "editor"), "grace")
    linus = sign_up(browser, invite(page, forge.url, "reviewer"), "linus")

    # The editor makes a set and imports 40 prompts from files, then submits it for review.
    grace.goto(forge.url + "/o/acme/p/support-bot/")
    grace.get_by_text("New prompt set").click()
    grace.locator("#set-slug").fill("core")
    grace.locator("#set-name").fill("Core")
    grace.get_by_role("button", name="Create").click()
    grace.wait_for_url(re.compile(r".*/o/acme/p/support-bot/s/core/$"))
    grace.goto(forge.url + "/o/acme/p/support-bot/s/core/import/")
    grace.locator("#import-files").set_input_files([str(p) for p in write_prompt_files(tmp_path / "prompts")])
    grace.get_by_role("button", name="Preview the import").click()
    expect(grace.locator("main")).to_contain_text(f"{PROMPTS} added")
    grace.get_by_role("button", name="Apply the import").click()
    grace.wait_for_url(re.compile(r".*/s/core/$"))
    grace.get_by_role("button", name="Submit for review").click()

    # The reviewer approves; the editor publishes to production.
    linus.goto(forge.url + "/o/acme/p/support-bot/s/core/")
    linus.get_by_role("button", name="Approve version 1").click()
    expect(linus.locator("main")).to_contain_text("LOCKED")
    grace.goto(forge.url + "/o/acme/p/support-bot/s/core/versions/")
    grace.locator("#v1").get_by_role("button", name="Publish to production").click()
    grace.get_by_role("button", name="Publish v1 to production").click()
    expect(grace.get_by_role("heading", name="Version 1 is live in production")).to_be_visible()

    # The owner makes a live token; a LIVE client in another process receives every prompt with it.
    page.goto(forge.url + "/o/acme/tokens/")
    page.locator("#token-target").select_option("support-bot/production")
    page.locator("#token-kind").select_option("live")
    page.locator("#token-name").fill("web servers")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-token").inner_text().strip()
    assert token.startswith("anvil_live_"), token
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_")}
    received = subprocess.run(
        [sys.executable, "-c", CLIENT, forge.url, token, str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    )
    answer = json.loads(received.stdout)
    assert len(answer["ids"]) == PROMPTS, answer["ids"]
    assert answer["greeting"] == "Hello Ada, this is prompt 7."

    # The version's Download, imported again, changes nothing.
    grace.goto(forge.url + "/o/acme/p/support-bot/s/core/versions/1/")
    with grace.expect_download() as download:
        grace.get_by_role("button", name="Download").click()
    exported = tmp_path / "export.zip"
    download.value.save_as(exported)
    summary = forge.cli("import", "acme/support-bot/core", str(exported), "--as", "grace", "--dry-run")
    assert summary.splitlines()[0].startswith("0 added, 0 changed, 0 removed"), summary
