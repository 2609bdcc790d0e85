"""The Import flow in a browser: upload prompt files on the set page, see the preview with its diffs, apply;
a bad file is refused naming its file and line; a version downloads as a zip that imports unchanged."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

SET = "/o/acme/p/support-bot/s/core/"


def sign_in(page: Page, url: str, username: str = "editor") -> None:
    page.goto(url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("anvil-demo")
    page.get_by_role("button", name="Sign in").click()


def files(*items: tuple[str, str]) -> list[dict]:
    return [{"name": name, "mimeType": "text/plain", "buffer": text.encode()} for name, text in items]


def test_import_previews_the_changes_then_applies_them(page: Page, forge, screenshot):
    sign_in(page, forge.url)
    page.goto(forge.url + SET)
    page.get_by_role("button", name="Reopen for editing").click()  # the demo set starts LOCKED
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Import into")).to_be_visible()

    page.get_by_label("Files or a .zip").set_input_files(files(
        ("imported.hello.j2", "---\ndescription: Says hello.\nparameters:\n  name: string\n---\nHello {{ name }}!\n"),
        ("imported.bye.md", "Goodbye {{ name }}.\n"),
    ))
    page.get_by_role("button", name="Preview the import").click()

    expect(page.locator("#import-summary")).to_have_text("2 added, 0 changed, 0 removed, 0 unchanged")
    expect(page.get_by_role("region", name="imported.hello added")).to_contain_text("Hello {{ name }}!")
    screenshot(page, "import-preview")
    page.get_by_role("button", name="Apply the import").click()

    expect(page).to_have_url(forge.url + SET)
    expect(page.get_by_text("Imported: 2 added, 0 changed, 0 removed, 0 unchanged.")).to_be_visible()
    expect(page.get_by_role("link", name="imported.hello")).to_be_visible()
    expect(page.get_by_role("button", name="Submit for review")).to_be_visible()  # still LIVE: review as usual


def test_a_bad_file_is_refused_with_its_file_and_line_and_nothing_changes(page: Page, forge):
    sign_in(page, forge.url)
    page.goto(forge.url + SET)
    page.get_by_role("button", name="Reopen for editing").click()
    page.goto(forge.url + SET + "import/")

    page.get_by_label("Files or a .zip").set_input_files(files(
        ("ok.prompt.j2", "Fine.\n"), ("broken.prompt.j2", "line one\n{% if %}\n"),
    ))
    page.get_by_role("button", name="Preview the import").click()

    expect(page.locator("#import-error")).to_contain_text("broken.prompt.j2, line 2: template syntax error")
    page.goto(forge.url + SET)
    expect(page.get_by_role("link", name="ok.prompt")).to_have_count(0)


def test_a_version_downloads_as_a_zip_of_prompt_files(page: Page, forge):
    sign_in(page, forge.url, "viewer")
    page.goto(forge.url + SET + "versions/1/")

    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()

    download = info.value
    assert download.suggested_filename == "support-bot-core-v1.zip"
    names = zipfile.ZipFile(download.path()).namelist()
    assert names[0] == "set.yaml"
    assert "greeting.welcome.j2" in names
