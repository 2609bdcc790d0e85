"""The LIVE HTTP API: releases, bundles with ETag/304, check-in validation, and the 401/404/429 rules."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from anvil_client.bundle import load_bundle
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.bundles import bundle_cache
from anvil_forge.distribution.checkin import MAX_CHECKIN_BYTES
from anvil_forge.distribution.models import AccessToken, LiveInstance, LiveProcess
from anvil_forge.distribution.services import token_create, token_revoke
from anvil_forge.distribution.tokens import failure_limiter
from anvil_forge.prompts.models import Environment
from forge.tests import factories

CHECKIN = {
    "instance_id": "5f0c2b7e",
    "name": "web-1",
    "host": "web-1.internal",
    "process_count": 4,
    "client_version": "0.1.0",
    "mode": "ACCEPTING",
    "pins": {},
    "versions": {},
    "usage": {"welcome.message": ["name", "plan"]},
}


def test_releases_lists_the_current_release_of_each_set_in_the_tokens_environment(live):
    response = live.client().get("/api/v1/live/releases")

    assert response.status_code == 200
    body = response.json()
    assert body["project"] == live.project.slug and body["environment"] == "production"
    assert body["last_event_id"] == str(live.release.pk)
    [entry] = body["releases"]
    assert entry["set"] == live.prompt_set.slug and entry["version"] == 1 and entry["release_id"] == live.release.pk
    assert entry["bundle_url"] == f"/api/v1/live/bundles/{live.prompt_set.slug}?version=1"
    assert entry["content_digest"] == live.release.version.digest


def test_bundle_is_a_valid_bundle_with_a_strong_etag_of_its_digest(live):
    response = live.client().get(f"/api/v1/live/bundles/{live.prompt_set.slug}")

    assert response.status_code == 200
    bundle = load_bundle(response.content)
    assert bundle.version == 1 and bundle.set == live.prompt_set.slug and bundle.environment == "production"
    assert bundle.approval == "approved" and bundle.raw["published_by"] == live.team.editor.get_username()
    assert response["ETag"] == '"' + bundle.digest.removeprefix("sha256:") + '"'
    assert not response["ETag"].startswith("W/")


def test_unchanged_bundle_answers_304_to_its_etag_and_200_to_another(live):
    url = f"/api/v1/live/bundles/{live.prompt_set.slug}"
    etag = live.client().get(url)["ETag"]

    not_modified = live.client().get(url, HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified["ETag"] == etag

    assert live.client().get(url, HTTP_IF_NONE_MATCH='"0000"').status_code == 200


@pytest.mark.parametrize("query", ["", "?version=1"])
def test_conditional_get_of_a_built_bundle_is_one_narrow_query_after_the_token(live, query):
    url = f"/api/v1/live/bundles/{live.prompt_set.slug}{query}"
    client = live.client()
    first = client.get(url)
    with CaptureQueriesContext(connection) as queries:
        not_modified = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
        again = client.get(url)
    assert not_modified.status_code == 304 and not_modified["ETag"] == first["ETag"]
    assert again.status_code == 200 and again.content == first.content and again["ETag"] == first["ETag"]
    assert len(queries) == 4  # per request: the token, then the bundle's key columns
    assert not any("snapshot" in query["sql"] for query in queries)


def test_bundle_served_from_the_cache_has_the_bytes_and_etag_of_a_fresh_build(live):
    url = f"/api/v1/live/bundles/{live.prompt_set.slug}?version=1"
    cached = live.client().get(url)
    bundle_cache.clear()
    fresh = live.client().get(url)
    assert (cached.content, cached["ETag"]) == (fresh.content, fresh["ETag"])


def test_new_release_changes_the_bundle_and_its_etag(live):
    url = f"/api/v1/live/bundles/{live.prompt_set.slug}"
    old_etag = live.client().get(url)["ETag"]
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    factories.make_release(version, actor=live.team.editor)

    response = live.client().get(url, HTTP_IF_NONE_MATCH=old_etag)
    assert response.status_code == 200
    assert load_bundle(response.content).version == 2
    assert response["ETag"] != old_etag


def test_pinned_older_version_stays_fetchable(live):
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    factories.make_release(version, actor=live.team.editor)

    response = live.client().get(f"/api/v1/live/bundles/{live.prompt_set.slug}?version=1")
    assert response.status_code == 200
    assert load_bundle(response.content).version == 1


def test_version_in_review_is_not_served_to_production_and_unknown_versions_are_404(live):
    factories.make_submitted_version(_reopened(live), author=live.team.editor)
    client = live.client()
    assert client.get(f"/api/v1/live/bundles/{live.prompt_set.slug}?version=2").status_code == 404
    assert client.get(f"/api/v1/live/bundles/{live.prompt_set.slug}?version=99").status_code == 404
    assert client.get(f"/api/v1/live/bundles/{live.prompt_set.slug}?version=abc").status_code == 400
    assert client.get("/api/v1/live/bundles/no-such-set").status_code == 404


def test_version_in_review_is_served_to_an_environment_that_accepts_review_versions(live):
    factories.make_submitted_version(_reopened(live), author=live.team.editor)
    _, raw = token_create(
        actor=live.team.admin,
        project=live.project,
        environment=factories.environment(live.project, "staging"),
        kind="live",
        name="staging",
    )
    response = live.client(raw).get(f"/api/v1/live/bundles/{live.prompt_set.slug}?version=2")
    assert response.status_code == 200
    assert load_bundle(response.content).approval == "in_review"


def test_cached_review_version_is_404_once_the_environment_stops_accepting_review_versions(live):
    factories.make_submitted_version(_reopened(live), author=live.team.editor)
    staging = factories.environment(live.project, "staging")
    _, raw = token_create(actor=live.team.admin, project=live.project, environment=staging, kind="live", name="s")
    url = f"/api/v1/live/bundles/{live.prompt_set.slug}?version=2"
    etag = live.client(raw).get(url)["ETag"]

    Environment.objects.filter(pk=staging.pk).update(accepts_review_versions=False)

    assert live.client(raw).get(url, HTTP_IF_NONE_MATCH=etag).status_code == 404


def test_a_set_of_another_project_is_404_for_this_token(live):
    other_project = factories.make_project(live.team.organisation, actor=live.team.owner)
    other_set = factories.make_prompt_set_with_prompts(other_project, actor=live.team.editor)
    version = factories.make_approved_version(other_set, author=live.team.editor, reviewer=live.team.reviewer)
    factories.make_release(version, actor=live.team.editor)

    response = live.client().get(f"/api/v1/live/bundles/{other_set.slug}")
    assert response.status_code == 404
    assert other_set.slug not in [r["set"] for r in live.client().get("/api/v1/live/releases").json()["releases"]]


@pytest.mark.parametrize("path", ["/api/v1/live/releases", "/api/v1/live/bundles/core"])
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer anvil_live_" + "x" * 43])
def test_bad_tokens_get_the_same_401_without_a_hint(live, path, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().get(path, **headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid token"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_expired_and_peer_tokens_get_the_same_401(live):
    expired, expired_raw = token_create(
        actor=live.team.admin, project=live.project, environment=live.token.environment, kind="live", name="e"
    )
    AccessToken.objects.filter(pk=expired.pk).update(expires_at="2000-01-01T00:00:00Z")
    _, peer_raw = token_create(
        actor=live.team.admin, project=live.project, environment=live.token.environment, kind="peer", name="p"
    )
    token_revoke(actor=live.team.admin, token=live.token)

    for raw in (live.raw, expired_raw, peer_raw):
        response = live.client(raw).get("/api/v1/live/releases")
        assert response.status_code == 401 and response.json() == {"error": "invalid token"}


def test_repeated_failures_from_one_address_are_slowed_and_logged_with_the_prefix_only(live, caplog):
    guess = "anvil_live_" + "G" * 43
    caplog.set_level(logging.WARNING, logger="anvil_forge.distribution")
    for _ in range(failure_limiter.limit):
        assert live.client(guess).get("/api/v1/live/releases").status_code == 401

    blocked = live.client(guess).get("/api/v1/live/releases")
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    # Even a valid token waits while the address is blocked: guessing must not be able to test tokens.
    assert live.client().get("/api/v1/live/releases").status_code == 429
    assert "anvil_live_GGGGGG" in caplog.text
    assert guess not in caplog.text


def test_checkin_records_the_instance_and_updates_it_in_place(live):
    client = live.client()
    first = client.post("/api/v1/live/checkin", CHECKIN, content_type="application/json")
    assert first.status_code == 200 and first.json()["ok"] is True

    changed = {**CHECKIN, "mode": "FROZEN", "process_count": 8}
    client.post("/api/v1/live/checkin", changed, content_type="application/json")

    instance = LiveInstance.objects.get()
    assert instance.instance_id == "5f0c2b7e" and instance.environment == live.token.environment
    assert instance.token == live.token and instance.name == "web-1" and instance.host == "web-1.internal"
    [process] = LiveProcess.objects.filter(instance=instance)
    assert process.process_id == 0, "a client that sends no process id is one process, id 0"
    assert process.mode == "FROZEN" and process.client_version == "0.1.0"
    assert process.usage == {"welcome.message": ["name", "plan"]}


def test_checkin_works_without_a_csrf_token(live):
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {live.raw}")
    response = client.post("/api/v1/live/checkin", CHECKIN, content_type="application/json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"instance_id": "x", "mode": "SLEEPY"}', "mode"),
        (b'{"name": "no id"}', "instance_id"),
        (b'{"instance_id": "a b c"}', "instance_id"),
        (b'{"instance_id": "x", "versions": {"core": "two"}}', "versions.core"),
        (b'{"instance_id": "x", "versions": {"core": 0}}', "versions.core"),
        (b'{"instance_id": "x", "pins": ["core"]}', "pins"),
        (b'{"instance_id": "x", "usage": {"Not An Id": []}}', "usage"),
        (b'{"instance_id": "x", "usage": {"a.b": ["ok", 3]}}', "usage.a.b"),
        (b'{"instance_id": "x", "process_count": true}', "process_count"),
        (b'{"instance_id": "x", "surprise": 1}', "surprise"),
        (b'{"instance_id": "x", "name": "a\\nb"}', "name"),
        (b'{"instance_id": "x", "process_count": NaN}', "not valid JSON"),
        (b'{"instance_id": "x", "process_id": "123"}', "process_id"),
        (b'{"instance_id": "x", "checkin_interval": 0}', "checkin_interval"),
        (b'{"instance_id": "x", "goodbye": "yes"}', "goodbye"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_garbage_checkins_are_refused_with_400_and_a_reason(live, body, reason):
    response = live.client().post("/api/v1/live/checkin", body, content_type="application/json")
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert not LiveInstance.objects.exists()


def test_oversized_checkin_is_refused_with_413(live):
    body = json.dumps({**CHECKIN, "name": "x" * (MAX_CHECKIN_BYTES + 1)})
    response = live.client().post("/api/v1/live/checkin", body, content_type="application/json")
    assert response.status_code == 413
    assert not LiveInstance.objects.exists()


def test_checkin_only_accepts_post(live):
    assert live.client().get("/api/v1/live/checkin").status_code == 405


def test_running_the_current_version_is_acknowledged_once_per_change(live):
    client = live.client()
    running = {**CHECKIN, "versions": {live.prompt_set.slug: 1}}
    client.post("/api/v1/live/checkin", running, content_type="application/json")
    client.post("/api/v1/live/checkin", running, content_type="application/json")

    [ack] = AuditEvent.objects.filter(action="release.acknowledge")
    assert ack.object_id == str(live.release.pk) and ack.actor_label == "instance web-1"
    assert ack.data["version"] == 1 and ack.data["instance_id"] == "5f0c2b7e"
    assert ack.project == live.project


def test_running_an_older_version_is_not_an_acknowledgement(live):
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    factories.make_release(version, actor=live.team.editor)
    live.client().post(
        "/api/v1/live/checkin", {**CHECKIN, "versions": {live.prompt_set.slug: 1}}, content_type="application/json"
    )
    assert not AuditEvent.objects.filter(action="release.acknowledge").exists()


def test_openapi_document_is_served_and_describes_the_live_endpoints(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    for path in ("/api/v1/live/releases", "/api/v1/live/bundles/{set}", "/api/v1/live/stream", "/api/v1/live/checkin"):
        assert path in document["paths"]


def _reopened(live):
    from anvil_forge.prompts import services

    services.prompt_set_reopen(actor=live.team.editor, prompt_set=live.prompt_set)
    live.prompt_set.refresh_from_db()
    return live.prompt_set


def test_a_publish_is_announced_only_after_commit_with_its_stream_event_built(
    live, monkeypatch, django_capture_on_commit_callbacks
):
    from anvil_forge.distribution import broadcast

    announced = []
    monkeypatch.setattr(
        broadcast.broadcaster, "announce_threadsafe", lambda *args: announced.append(args)
    )
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        release = factories.make_release(version, actor=live.team.editor)
    assert announced == []

    for callback in callbacks:
        callback()

    [(kind, ident, (environment_id, data))] = announced
    assert (kind, ident, environment_id) == ("release", release.pk, release.environment_id)
    event = json.loads(data)
    assert event["release_id"] == release.pk and load_bundle(event["bundle"]).version == 2
