"""The web import (upload, preview with diffs, apply) on the set page, and a version's Download."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from anvil_forge.audit.models import AuditEvent
from anvil_forge.prompts import fileformat
from anvil_forge.prompts.models import Prompt, PromptSet
from forge.tests import factories

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def base(prompt_set: PromptSet) -> str:
    project = prompt_set.project
    return f"/o/{project.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/"


def upload(*files: tuple[str, bytes]) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data) for name, data in files]


def test_the_set_page_offers_import_to_editors_only(team, prompt_set):
    assert "/import/" in signed_in(team.editor).get(base(prompt_set)).content.decode()
    assert "/import/" not in signed_in(team.viewer).get(base(prompt_set)).content.decode()


def test_upload_shows_a_preview_with_diffs_and_writes_nothing_until_applied(team, prompt_set):
    client = signed_in(team.editor)
    url = base(prompt_set) + "import/"
    files = upload(
        ("errors.not_found.j2", b"---\nparameters:\n  thing: string\n---\nNothing found: {{ thing }}.\n"),
        ("fresh.prompt.txt", b"Brand new {{ x }}\n"),
    )

    preview = client.post(url, {"stage": "preview", "prune": "1", "files": files})

    html = preview.content.decode()
    assert preview.status_code == 200
    assert "1 added, 1 changed, 1 removed, 0 unchanged" in html
    assert 'aria-label="fresh.prompt added"' in html
    assert 'aria-label="welcome.message removed"' in html
    assert "Nothing" in html and "Apply the import" in html
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="fresh.prompt").exists()

    applied = client.post(url, {"stage": "apply"})

    assert applied.status_code == 302 and applied["Location"] == base(prompt_set)
    assert sorted(prompt_set.prompts.values_list("key", flat=True)) == ["errors.not_found", "fresh.prompt"]
    assert AuditEvent.objects.get(action="prompt_set.import").data["source"] == "web upload"
    assert "Imported: 1 added, 1 changed, 1 removed" in client.get(base(prompt_set)).content.decode()
    assert client.post(url, {"stage": "apply"}).status_code == 400  # applied once only


def test_a_zip_upload_is_previewed_like_files(team, prompt_set):
    data = fileformat.build_zip([("a.one.j2", b"A\n"), ("set.yaml", b"name: Zipped\n")])

    response = signed_in(team.editor).post(base(prompt_set) + "import/",
                                           {"stage": "preview", "files": upload(("p.zip", data))})

    html = response.content.decode()
    assert "1 added, 0 changed, 0 removed, 0 unchanged" in html
    assert "name becomes “Zipped”" in html


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ((("bad.j2", b"{% if %}"),), "bad.j2, line 1: template syntax error"),
        ((("a.j2", b"---\nparameters:\n  x: text\n---\n"),), "a.j2, line 3: parameter x: unknown type"),
        ((("evil.zip", None),), "climbs out"),
        ((("Bad Name.j2", b"x"),), "not a valid prompt id"),
    ],
)
def test_bad_uploads_are_refused_with_file_and_line_and_nothing_is_written(team, prompt_set, files, words):
    if files[0][1] is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../evil.j2", "x")
        files = (("evil.zip", buffer.getvalue()),)
    events = AuditEvent.objects.count()

    response = signed_in(team.editor).post(base(prompt_set) + "import/",
                                           {"stage": "preview", "files": upload(*files)})

    assert response.status_code == 400
    assert words in response.content.decode()
    assert AuditEvent.objects.count() == events


def test_an_oversized_upload_is_refused_naming_the_limit(team, prompt_set, monkeypatch):
    from anvil_forge.web.views import transfer

    monkeypatch.setattr(transfer, "MAX_UPLOAD_BYTES", 1024)

    response = signed_in(team.editor).post(base(prompt_set) + "import/",
                                           {"stage": "preview", "files": upload(("a.j2", b"x" * 5000))})

    assert response.status_code == 400
    assert "larger than" in response.content.decode()
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="a").exists()


def test_applying_after_the_set_changed_is_refused(team, prompt_set):
    client = signed_in(team.editor)
    url = base(prompt_set) + "import/"
    client.post(url, {"stage": "preview", "files": upload(("a.j2", b"A"))})
    factories.edit_prompt(prompt_set, "errors.not_found", "meanwhile", actor=team.admin)

    response = client.post(url, {"stage": "apply"})

    assert response.status_code == 409
    assert "changed since the preview" in response.content.decode()
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="a").exists()


def test_a_reviewer_gets_403_for_the_import_page_and_its_post(team, prompt_set):
    client = signed_in(team.reviewer)

    assert client.get(base(prompt_set) + "import/").status_code == 403
    assert client.post(base(prompt_set) + "import/", {"stage": "preview"}).status_code == 403


def test_download_gives_the_versions_prompts_as_a_zip_that_imports_unchanged(team, prompt_set):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    client = signed_in(team.viewer)

    page = client.get(base(prompt_set) + "versions/1/").content.decode()
    response = client.get(base(prompt_set) + "versions/1/download/")

    assert base(prompt_set) + "versions/1/download/" in page
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f"{prompt_set.slug}-v1.zip" in response["Content-Disposition"]
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["set.yaml", "errors.not_found.j2", "welcome.message.j2"]
    editor = signed_in(team.editor)
    preview = editor.post(base(prompt_set) + "import/",
                          {"stage": "preview", "files": upload(("v1.zip", response.content))})
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in preview.content.decode()
    assert "Nothing to import" in preview.content.decode()


def test_more_files_than_one_upload_takes_is_refused_saying_to_zip_them(team, prompt_set):
    many = upload(*((f"p.n{i}.j2", b"x") for i in range(101)))

    response = signed_in(team.editor).post(base(prompt_set) + "import/", {"stage": "preview", "files": many})

    assert response.status_code == 400
    assert "put the prompt files in a .zip" in response.content.decode()
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="p.n1").exists()
