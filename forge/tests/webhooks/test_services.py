from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from anvil_forge.core.exceptions import ApplicationError, PermissionDenied
from anvil_forge.distribution import services as distribution_services
from anvil_forge.webhooks import services, signing
from anvil_forge.webhooks.models import Delivery, DeliveryState
from forge.tests import factories
from forge.tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def loopback(settings):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    settings.ANVIL_WEBHOOK_RETRY_BASE_SECONDS = 0


def _publish(prompt_set, team):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return factories.make_release(version, actor=team.editor)


def test_a_publish_queues_one_delivery_per_webhook_that_wants_it(team, project, prompt_set):
    wants, _ = services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.publish"],
    )
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="other", url="https://hooks.example.com/b",
        events=["token.create"],
    )
    _publish(prompt_set, team)
    assert list(Delivery.objects.values_list("webhook_id", "action")) == [(wants.pk, "release.publish")]


def test_a_change_that_rolls_back_queues_nothing(team, project, prompt_set):
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["token.create"],
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        distribution_services.token_create(
            actor=team.owner, project=project, environment=factories.environment(project), kind="live", name="t"
        )
        raise RuntimeError("rolled back")
    assert not Delivery.objects.exists()


def test_a_project_webhook_hears_only_its_project(team, project, prompt_set):
    other = factories.make_project(team.organisation, actor=team.owner)
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["token.create"], project=other,
    )
    distribution_services.token_create(
        actor=team.owner, project=project, environment=factories.environment(project), kind="live", name="t"
    )
    assert not Delivery.objects.exists()


def test_only_owners_and_admins_manage_webhooks(team):
    for role in ("editor", "reviewer", "viewer"):
        with pytest.raises(PermissionDenied):
            services.webhook_create(
                actor=team.member(role), organisation=team.organisation, name="w",
                url="https://hooks.example.com/a", events=["token.create"],
            )


@pytest.mark.parametrize(
    ("url", "events"),
    [("ftp://x.example.com/", ["token.create"]), ("https://h.example.com/", []), ("https://h.example.com/", ["nope"])],
)
def test_a_bad_url_or_event_list_is_refused_naming_the_field(team, url, events):
    with pytest.raises(ApplicationError) as refused:
        services.webhook_create(actor=team.owner, organisation=team.organisation, name="w", url=url, events=events)
    assert refused.value.extra["fields"]


def test_a_delivery_is_signed_and_verifies(team, project, prompt_set, loopback):
    with Receiver() as receiver:
        _, secret = services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url, events=["release.publish"]
        )
        release = _publish(prompt_set, team)
        assert services.deliveries_send_due() == 1
    [got] = receiver.received
    assert signing.verify(secret, got.body, got.headers["anvil-signature"])
    assert not signing.verify(secret, got.body + b" ", got.headers["anvil-signature"])
    assert not signing.verify("whsec_other", got.body, got.headers["anvil-signature"])
    payload = json.loads(got.body)
    assert payload["event"] == got.headers["anvil-event"] == "release.publish"
    assert payload["object"]["id"] == str(release.pk) and payload["project"] == project.slug
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.response_code, delivery.attempts) == (DeliveryState.DELIVERED, 200, 1)


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(team, project, prompt_set, loopback, settings):
    settings.ANVIL_WEBHOOK_RETRY_BASE_SECONDS = 60
    with Receiver(statuses=[500, 503]) as receiver:
        services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url, events=["release.publish"]
        )
        _publish(prompt_set, team)
        services.deliveries_send_due()
        delivery = Delivery.objects.get()
        assert (delivery.state, delivery.response_code, delivery.attempts) == ("pending", 500, 1)
        first_wait = delivery.next_attempt_at - delivery.last_attempt_at
        assert timedelta(seconds=50) < first_wait < timedelta(seconds=70)
        assert services.deliveries_send_due() == 0, "not due yet"
        Delivery.objects.update(next_attempt_at=timezone.now())
        services.deliveries_send_due()
        delivery.refresh_from_db()
        assert (delivery.response_code, delivery.attempts) == (503, 2)
        assert delivery.next_attempt_at - delivery.last_attempt_at > timedelta(seconds=100), "doubled"
        Delivery.objects.update(next_attempt_at=timezone.now())
        services.deliveries_send_due()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.response_code, delivery.attempts) == ("delivered", 200, 3)
    assert len({r.headers["anvil-delivery"] for r in receiver.received}) == 1, "the same delivery id each time"


def test_a_delivery_is_given_up_after_the_retry_window(team, project, prompt_set, loopback, settings):
    settings.ANVIL_WEBHOOK_RETRY_HOURS = 1
    with Receiver(statuses=[500]) as receiver:
        services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url, events=["release.publish"]
        )
        _publish(prompt_set, team)
        Delivery.objects.update(created_at=timezone.now() - timedelta(hours=2))
        services.deliveries_send_due()
    assert Delivery.objects.get().state == DeliveryState.FAILED


def test_a_loopback_url_is_refused_at_send_time_by_the_peer_address_rules(team, project, prompt_set, settings):
    settings.ANVIL_PEER_PRIVATE_NETWORKS = []
    with Receiver() as receiver:
        services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url, events=["release.publish"]
        )
        _publish(prompt_set, team)
        services.deliveries_send_due()
    assert receiver.received == []
    delivery = Delivery.objects.get()
    assert delivery.state == "pending" and delivery.response_code is None and "refused" in delivery.last_error


def test_the_chat_format_carries_a_text_line(team, project, prompt_set, loopback):
    with Receiver() as receiver:
        services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url,
            events=["release.publish"], payload_format="chat",
        )
        _publish(prompt_set, team)
        services.deliveries_send_due()
    text = json.loads(receiver.received[0].body)["text"]
    assert text.startswith(f"{team.organisation.slug}/{project.slug}: {team.editor.get_username()} published")


def test_send_again_queues_the_delivery_anew(team, project, prompt_set, loopback):
    with Receiver() as receiver:
        services.webhook_create(
            actor=team.owner, organisation=team.organisation, name="w", url=receiver.url, events=["release.publish"]
        )
        _publish(prompt_set, team)
        services.deliveries_send_due()
        services.delivery_resend(actor=team.admin, delivery=Delivery.objects.get())
        assert services.deliveries_send_due() == 1
    assert len(receiver.received) == 2
    assert Delivery.objects.get().state == "delivered"


def test_a_claimed_delivery_is_not_claimed_again_while_it_is_being_sent(team, project, prompt_set):
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.publish"],
    )
    _publish(prompt_set, team)
    assert len(services.deliveries_claim()) == 1
    assert services.deliveries_claim() == []


@pytest.mark.parametrize("action", ["rollout.start", "rollout.promote", "rollout.halt", "rollout.complete"])
def test_rollout_events_are_offered_and_queued(team, project, action):
    from anvil_forge.audit.services import audit_record

    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a", events=[action]
    )
    with transaction.atomic():
        audit_record(actor=None, action=action, obj=project, organisation=team.organisation, project=project)
    assert list(Delivery.objects.values_list("action", flat=True)) == [action]
