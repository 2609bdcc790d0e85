"""Personal API keys: shown once and stored hashed, refused when revoked, expired or malformed, read-only and
organisation limits, last use recorded, key events audited."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.accounts.models import ApiKey
from anvil_forge.api.keys import api_key_create, api_key_revoke, api_keys_for
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, NotFound, PermissionDenied
from anvil_forge.prompts.models import Prompt
from forge.tests.api.conftest import KeyClient

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_only_its_hash_and_prefix_are_stored(team):
    made = api_key_create(actor=team.editor, user=team.editor, name="ci")

    stored = ApiKey.objects.get(pk=made.key.pk)
    assert made.raw.startswith("anvil_key_") and len(made.raw) == len("anvil_key_") + 43
    assert stored.key_hash == hashlib.sha256(made.raw.encode()).hexdigest()
    assert stored.prefix == made.raw[:16] and made.raw not in str(ApiKey.objects.values().get(pk=stored.pk))
    event = AuditEvent.objects.get(action="api_key.create")
    assert event.actor_label == team.editor.get_username() and made.raw not in str(event.data)


def test_a_user_cannot_make_or_revoke_another_users_key(team):
    with pytest.raises(PermissionDenied):
        api_key_create(actor=team.owner, user=team.editor, name="x")
    made = api_key_create(actor=team.editor, user=team.editor, name="mine")
    with pytest.raises(NotFound):
        api_key_revoke(actor=team.owner, key=made.key)
    assert list(api_keys_for(actor=team.owner)) == []


def test_a_key_limited_to_an_organisation_needs_its_user_to_be_a_member(team, other_team):
    with pytest.raises(NotFound):
        api_key_create(actor=team.editor, user=team.editor, name="x", organisation=other_team.organisation)


def test_expiry_out_of_range_is_refused(team):
    with pytest.raises(ApplicationError):
        api_key_create(actor=team.editor, user=team.editor, name="x", expires_in_days=0)


def test_a_key_answers_as_its_user_and_records_its_last_use(team, key_for):
    client = key_for(team.viewer)

    response = client.get("organisations")

    assert response.status_code == 200
    assert response.json()["items"] == [
        {"slug": team.organisation.slug, "name": team.organisation.name, "role": "viewer"}
    ]
    assert ApiKey.objects.get(pk=client.key.pk).last_used_at is not None


@pytest.mark.parametrize("raw", [None, "", "anvil_key_short", "anvil_live_" + "a" * 43, "anvil_key_" + "a" * 43])
def test_missing_malformed_or_unknown_keys_get_401_as_json(db, raw):
    response = KeyClient(raw).get("organisations")

    assert response.status_code == 401
    assert response.json() == {"error": "invalid API key"}


def test_revoked_expired_and_inactive_users_keys_are_refused(team, key_for):
    revoked, expired, inactive = key_for(team.editor), key_for(team.editor), key_for(team.viewer)
    api_key_revoke(actor=team.editor, key=revoked.key)
    ApiKey.objects.filter(pk=expired.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    team.viewer.is_active = False
    team.viewer.save()

    for client in (revoked, expired, inactive):
        assert client.get("organisations").status_code == 401
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1


def test_repeated_failures_are_slowed_down(db):
    statuses = [KeyClient("anvil_key_" + "b" * 43).get("organisations").status_code for _ in range(11)]

    assert statuses[-1] == 429


def test_a_read_only_key_reads_but_every_write_is_refused_and_changes_nothing(team, prompt_set, key_for):
    client = key_for(team.editor, read_only=True)
    base = f"organisations/{team.organisation.slug}/projects/{prompt_set.project.slug}/sets/{prompt_set.slug}/"
    before = list(Prompt.objects.values_list("key", "template", "revision"))

    assert client.get(base + "prompts").status_code == 200
    writes = [
        client.post(base + "prompts", {"id": "x.y", "template": "hi"}),
        client.patch(base + "prompts/welcome.message", {"base_revision": 1, "template": "changed"}),
        client.post(base + "submit"),
        client.post(base + "files", {"files": {"x.y.j2": "hi\n"}}),
    ]

    assert [r.status_code for r in writes] == [403, 403, 403, 403]
    assert writes[0].json() == {"error": "this API key is read-only"}
    assert list(Prompt.objects.values_list("key", "template", "revision")) == before
    # Running test cases changes nothing: a read-only key may.
    assert client.post(base + "check").status_code == 200


def test_a_key_limited_to_one_organisation_finds_no_other(team, db, key_for):
    from forge.tests import factories

    second = factories.make_org_with_members()
    from anvil_forge.accounts.services import membership_add

    membership_add(actor=second.owner, organisation=second.organisation, user=team.editor, role="editor")
    limited = key_for(team.editor, organisation=team.organisation)
    everywhere = key_for(team.editor)

    assert [o["slug"] for o in limited.get("organisations").json()["items"]] == [team.organisation.slug]
    assert len(everywhere.get("organisations").json()["items"]) == 2
    refused = limited.get(f"organisations/{second.organisation.slug}/projects")
    assert refused.status_code == 404
    assert everywhere.get(f"organisations/{second.organisation.slug}/projects").status_code == 200
