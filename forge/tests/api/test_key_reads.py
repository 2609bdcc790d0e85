"""Reads with an API key are recorded per key: a counter per key, path and hour (shown under the key on
``/account/``, only to its user) and one ``api_key.read`` audit event per key, path and hour."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from anvil_forge.accounts.models import ApiKeyRead
from anvil_forge.api.keys import api_key_read_record
from anvil_forge.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _set_path(team, prompt_set) -> str:
    return f"organisations/{team.organisation.slug}/projects/{prompt_set.project.slug}/sets/{prompt_set.slug}"


def reads_cell(page: str, prefix: str) -> str:
    """The "Reads (7 days)" cell of the key row with ``prefix`` on the account page."""
    row = re.search(rf"<tr>\s*<td>[^<]*</td>\s*<td class=\"mono\">{re.escape(prefix)}….*?</tr>", page, re.S)
    assert row, f"no row for {prefix}"
    cell = re.search(r'<td data-testid="key-reads">(.*?)</td>', row.group(0), re.S)
    assert cell
    return cell.group(1)


def test_reads_are_counted_per_key_and_hour_and_audited_once_per_key_path_and_hour(team, prompt_set, key_for):
    a, b = key_for(team.editor), key_for(team.editor)
    path = _set_path(team, prompt_set)

    for _ in range(3):
        assert a.get(path).status_code == 200
    assert a.get(path + "/files").status_code == 200
    assert a.get(path + "/versions").status_code == 200
    assert b.get(path + "/files").status_code == 200
    assert a.get(path + "/nope").status_code == 404  # a failed read is no read

    counts = {(r.key_id, r.resource): r.count for r in ApiKeyRead.objects.all()}
    assert counts == {
        (a.key.pk, path): 3,
        (a.key.pk, path + "/files"): 1,
        (a.key.pk, path + "/versions"): 1,
        (b.key.pk, path + "/files"): 1,
    }
    events = AuditEvent.objects.filter(action="api_key.read").order_by("id")
    assert [(e.object_id, e.data["resource"]) for e in events] == [
        (str(a.key.pk), path), (str(a.key.pk), path + "/files"), (str(a.key.pk), path + "/versions"),
        (str(b.key.pk), path + "/files"),
    ]
    event = events.first()
    assert event.actor_id == team.editor.pk and event.data["prefix"] == a.key.prefix
    assert event.organisation_id == team.organisation.pk and event.project_id == prompt_set.project_id


def test_the_next_hour_counts_anew_and_is_audited_again(team, key_for):
    a = key_for(team.viewer)
    now = timezone.now().replace(minute=59)
    assert api_key_read_record(key=a.key, resource="organisations", now=now) is True
    assert api_key_read_record(key=a.key, resource="organisations", now=now) is False
    assert api_key_read_record(key=a.key, resource="organisations", now=now + timedelta(minutes=2)) is True
    assert sorted(ApiKeyRead.objects.values_list("count", flat=True)) == [1, 2]
    assert AuditEvent.objects.filter(action="api_key.read").count() == 2


def test_writes_are_not_counted_as_reads(team, prompt_set, key_for):
    editor = key_for(team.editor)
    response = editor.post(_set_path(team, prompt_set) + "/prompts", {"id": "new.one", "template": "Hi"})
    assert response.status_code == 201, response.content
    assert not ApiKeyRead.objects.exists()


def test_the_account_page_shows_each_keys_reads_under_it_and_only_the_users_own(team, prompt_set, key_for):
    a, b = key_for(team.editor), key_for(team.editor)
    others = key_for(team.reviewer)
    path = _set_path(team, prompt_set)
    a.get(path + "/files")
    a.get(path + "/files")
    others.get(path + "/versions")

    editor = Client()
    editor.force_login(team.editor)
    page = editor.get("/account/").content.decode()

    assert f"{path}/files</span>: 2 reads" in reads_cell(page, a.key.prefix)
    assert path not in reads_cell(page, b.key.prefix) and "none" in reads_cell(page, b.key.prefix)
    assert others.key.prefix not in page and f"{path}/versions" not in page  # another user's key and reads

    reviewer = Client()
    reviewer.force_login(team.reviewer)
    theirs = reviewer.get("/account/").content.decode()
    assert f"{path}/versions</span>: 1 read," in reads_cell(theirs, others.key.prefix)
    assert a.key.prefix not in theirs and f"{path}/files" not in theirs


def test_a_change_made_with_a_key_says_which_key_in_its_audit_event(team, prompt_set, key_for):
    from anvil_forge.prompts import services as prompt_services

    editor = key_for(team.editor)
    response = editor.post(_set_path(team, prompt_set) + "/prompts", {"id": "new.one", "template": "Hi"})
    assert response.status_code == 201, response.content
    prompt_services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)  # in the web: no key

    by_key = AuditEvent.objects.filter(actor=team.editor, data__api_key=editor.key.prefix)
    assert list(by_key.values_list("action", flat=True)) == ["prompt.create"]  # a POST is no read
    submitted = AuditEvent.objects.get(action="prompt_set.submit")
    assert "api_key" not in submitted.data
