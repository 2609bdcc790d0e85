"""ACCESS_TOKENs: shape, storage, authentication, revocation, audit, and the failure limiter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.distribution import broadcast
from anvil_forge.distribution.models import AccessToken
from anvil_forge.distribution.services import token_authenticate, token_create, token_revoke
from anvil_forge.distribution.tokens import FailureLimiter, loggable_prefix, token_hash
from forge.tests import factories


def _create(team, project, kind="live", **kwargs):
    return token_create(
        actor=team.admin,
        project=project,
        environment=factories.environment(project),
        kind=kind,
        name=kwargs.pop("name", "web servers"),
        **kwargs,
    )


def test_created_token_has_readable_prefix_and_32_random_bytes_and_only_its_hash_is_stored(team, project):
    token, raw = _create(team, project)

    assert raw.startswith("anvil_live_")
    assert len(raw) == len("anvil_live_") + 43  # secrets.token_urlsafe(32)
    assert token.prefix == raw[: len("anvil_live_") + 6]
    stored = AccessToken.objects.filter(pk=token.pk).values().get()
    assert raw not in {str(value) for value in stored.values()}
    assert stored["token_hash"] == token_hash(raw)
    assert token.created_by == team.admin


def test_peer_tokens_have_peer_prefix_and_do_not_authenticate_as_live(team, project):
    token, raw = _create(team, project, kind="peer")

    assert raw.startswith("anvil_peer_")
    assert token_authenticate(raw, kind="peer") == token
    assert token_authenticate(raw, kind="live") is None


def test_valid_token_authenticates_and_several_may_be_active_at_once(team, project):
    first, first_raw = _create(team, project, name="old")
    second, second_raw = _create(team, project, name="new")

    assert token_authenticate(first_raw, kind="live") == first
    assert token_authenticate(second_raw, kind="live") == second


@pytest.mark.parametrize("raw", [None, "", "anvil_live_short", "Bearer x", "anvil_live_" + "A" * 43, "x" * 5000])
def test_unknown_or_malformed_tokens_do_not_authenticate(team, project, raw):
    _create(team, project)
    assert token_authenticate(raw, kind="live") is None


def test_revoked_token_stops_authenticating_at_once_and_revocation_is_audited(team, project):
    token, raw = _create(team, project)

    token_revoke(actor=team.owner, token=token)

    assert token_authenticate(raw, kind="live") is None
    token.refresh_from_db()
    assert token.revoked_by == team.owner and token.revoked_at is not None
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.object_id == str(token.pk) and event.data["prefix"] == token.prefix
    assert raw not in str(event.data)


def test_revoking_twice_is_refused(team, project):
    token, _ = _create(team, project)
    token_revoke(actor=team.owner, token=token)
    with pytest.raises(Conflict, match="already revoked"):
        token_revoke(actor=team.owner, token=token)


def test_revocation_is_announced_to_the_streams_only_after_commit(
    team, project, monkeypatch, django_capture_on_commit_callbacks
):
    token, _ = _create(team, project)
    announced = []
    monkeypatch.setattr(
        broadcast.broadcaster, "announce_threadsafe", lambda kind, ident, prebuilt=None: announced.append((kind, ident))
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        token_revoke(actor=team.owner, token=token)
    assert announced == []
    for callback in callbacks:
        callback()
    assert announced == [("revoke", token.pk)]


def test_expired_token_does_not_authenticate(team, project):
    token, raw = _create(team, project, expires_at=timezone.now() + timedelta(days=1))
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert token_authenticate(raw, kind="live") is None


def test_expiry_in_the_past_is_refused_at_creation(team, project):
    with pytest.raises(ApplicationError, match="future"):
        _create(team, project, expires_at=timezone.now() - timedelta(minutes=1))


def test_last_used_is_written_at_most_once_a_minute(team, project):
    token, raw = _create(team, project)
    token_authenticate(raw, kind="live")
    first = AccessToken.objects.get(pk=token.pk).last_used_at
    assert first is not None

    token_authenticate(raw, kind="live")
    assert AccessToken.objects.get(pk=token.pk).last_used_at == first

    AccessToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    token_authenticate(raw, kind="live")
    assert AccessToken.objects.get(pk=token.pk).last_used_at > first - timedelta(minutes=1)


def test_creation_is_audited_without_the_secret(team, project):
    token, raw = _create(team, project)
    event = AuditEvent.objects.get(action="token.create")
    assert event.actor == team.admin and event.object_id == str(token.pk)
    assert event.data["prefix"] == token.prefix and event.data["environment"] == "production"
    assert raw not in str(event.data) and raw not in event.object_repr


@pytest.mark.parametrize("role", ["editor", "reviewer", "viewer"])
def test_roles_without_token_management_may_not_create_or_revoke(team, project, role):
    with pytest.raises(PermissionDenied):
        token_create(
            actor=team.member(role),
            project=project,
            environment=factories.environment(project),
            kind="live",
            name="x",
        )
    token, _ = _create(team, project)
    with pytest.raises(PermissionDenied):
        token_revoke(actor=team.member(role), token=token)


def test_another_organisations_owner_cannot_see_the_project_to_make_tokens(team, other_team, project):
    with pytest.raises(NotFound):
        token_create(
            actor=other_team.owner,
            project=project,
            environment=factories.environment(project),
            kind="live",
            name="x",
        )


def test_environment_of_another_project_and_blank_name_and_unknown_kind_are_refused(team, project):
    other = factories.make_project(team.organisation, actor=team.owner)
    with pytest.raises(ApplicationError, match="does not belong"):
        token_create(actor=team.admin, project=project, environment=factories.environment(other), kind="live", name="x")
    with pytest.raises(ApplicationError, match="needs a name"):
        _create(team, project, name="  ")
    with pytest.raises(ApplicationError, match="Unknown token kind"):
        _create(team, project, kind="admin")


def test_failure_limiter_blocks_an_address_after_the_limit_until_the_window_passes():
    limiter = FailureLimiter(limit=3, window=60)
    for second in range(3):
        assert limiter.retry_after("10.0.0.1", now=100 + second) == 0
        limiter.record_failure("10.0.0.1", now=100 + second)

    assert limiter.retry_after("10.0.0.1", now=103) == 57
    assert limiter.retry_after("10.0.0.2", now=103) == 0
    assert limiter.retry_after("10.0.0.1", now=160.5) == 0


def test_failure_limiter_table_stays_bounded():
    limiter = FailureLimiter(limit=2, window=60, max_addresses=100)
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}", now=float(n))
    assert len(limiter._failures) <= 100


def test_loggable_prefix_never_reveals_more_than_the_readable_prefix():
    raw = "anvil_live_" + "S" * 43
    assert loggable_prefix(raw) == "anvil_live_SSSSSS"
    assert loggable_prefix("\x1b[31mevil\nline") == "(unreadable)"
