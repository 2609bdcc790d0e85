"""Tokens (shown once, revoked with confirmation), instances and the audit log's filters."""

from __future__ import annotations

import pytest

from anvil_forge.distribution.models import AccessToken
from forge.tests import factories

pytestmark = pytest.mark.django_db


def test_a_new_token_is_shown_once_with_the_two_connect_lines(as_user, team, project, urls):
    client = as_user(team.admin)
    response = client.post(urls["tokens"], {"target": f"{project.slug}/production", "kind": "live", "name": "web"})
    body = response.content.decode()
    raw = body.split('data-testid="new-token">')[1].split("<")[0]
    assert raw.startswith("anvil_live_")
    assert "pip install anvil-client" in body and f"anvil connect http://127.0.0.1:8000 --token {raw}" in body
    assert "no-store" in response["Cache-Control"]
    assert raw not in client.get(urls["tokens"]).content.decode()


def test_a_refused_token_form_keeps_what_was_typed(as_user, team, project, urls):
    data = {"target": f"{project.slug}/production", "kind": "live", "name": "web", "expires_days": "soon"}
    response = as_user(team.admin).post(urls["tokens"], data)
    body = response.content.decode()
    assert response.status_code == 400 and "whole number of days" in body and 'value="soon"' in body


def test_revoking_asks_first_then_revokes(as_user, team, project, urls):
    client = as_user(team.admin)
    client.post(urls["tokens"], {"target": f"{project.slug}/production", "kind": "live", "name": "web"})
    token = AccessToken.objects.get(project=project)
    revoke = f"{urls['tokens']}{token.pk}/revoke/"
    assert "cut off at once" in client.get(revoke).content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None
    assert client.post(revoke).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_audit_log_filters_by_actor_action_project_and_time(as_user, team, project, prompt_set, urls):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    client = as_user(team.viewer)
    reviewer = team.reviewer.get_username()
    by_reviewer = client.get(urls["audit"], {"actor": reviewer}).content.decode()
    assert "version.approve" in by_reviewer and "prompt.create" not in by_reviewer
    by_action = client.get(urls["audit"], {"action": "prompt"}).content.decode()
    assert "prompt.create" in by_action and "version.approve" not in by_action
    assert "prompt_set.submit" not in by_action  # "prompt" is a kind of action, not a text prefix
    assert (
        "prompt.create" in client.get(urls["audit"], {"project": project.slug, "since": "2000-01-01"}).content.decode()
    )
    assert "No events match" in client.get(urls["audit"], {"until": "2000-01-01"}).content.decode()
    bad = client.get(urls["audit"], {"since": "yesterday"}).content.decode()
    assert "is not a date" in bad


def test_instances_page_lists_mode_versions_pins_and_host(as_user, team, project, urls):
    from anvil_forge.distribution import services
    from anvil_forge.distribution.checkin import CheckIn

    production = factories.environment(project)
    token, _ = services.token_create(actor=team.owner, project=project, environment=production, kind="live", name="t")
    services.instance_checkin(
        token=token,
        checkin=CheckIn(
            instance_id="i-1",
            name="web-1",
            host="host-a",
            process_count=4,
            client_version="0.1.0",
            mode="FROZEN",
            pins={"core": 2},
            versions={"core": 2},
            usage={},
        ),
    )
    body = as_user(team.viewer).get(urls["instances"]).content.decode()
    assert "web-1" in body and "host-a" in body and "FROZEN" in body and "core pinned v2" in body and "0.1.0" in body
