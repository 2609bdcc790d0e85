from __future__ import annotations

import re

import pytest
from django.test import Client

from anvil_forge.audit.models import AuditEvent
from anvil_forge.webhooks import services
from anvil_forge.webhooks.models import Delivery, Webhook
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_owner_adds_a_webhook_and_sees_its_secret_once(team, project):
    page = _client(team.owner).post(
        f"/o/{team.organisation.slug}/webhooks/",
        {"name": "chat", "url": "https://hooks.example.com/x", "events": ["release.publish", "token.create"],
         "project": project.slug, "payload_format": "chat"},
    )
    assert page.status_code == 201
    html = page.content.decode()
    secret = re.search(r"whsec_[\w-]+", html).group(0)
    webhook = Webhook.objects.get()
    assert (webhook.project, webhook.payload_format) == (project, "chat")
    assert webhook.events == ["release.publish", "token.create"]
    assert AuditEvent.objects.filter(action="webhook.create").exists()
    again = _client(team.owner).get(f"/o/{team.organisation.slug}/webhooks/{webhook.pk}/").content.decode()
    assert secret not in again


def test_a_bad_url_is_shown_on_the_form_with_the_input_kept(team):
    page = _client(team.admin).post(
        f"/o/{team.organisation.slug}/webhooks/", {"name": "x", "url": "gopher://h/", "events": ["token.create"]}
    )
    assert page.status_code == 400
    assert "gopher://h/" in page.content.decode() and not Webhook.objects.exists()


def test_the_delivery_log_shows_state_and_response_and_sends_again(team, project, prompt_set):
    webhook, _ = services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.publish"],
    )
    factories.make_release(
        factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer), actor=team.editor
    )
    delivery = Delivery.objects.get()
    Delivery.objects.update(state="failed", response_code=502, attempts=9)
    client = _client(team.owner)
    page = client.get(f"/o/{team.organisation.slug}/webhooks/{webhook.pk}/").content.decode()
    assert "release.publish" in page and "502" in page and "failed" in page and "Send again" in page
    answer = client.post(f"/o/{team.organisation.slug}/webhooks/{webhook.pk}/deliveries/{delivery.pk}/resend/")
    assert answer.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("pending", 0)


def test_the_pages_carry_no_inline_script_or_style(team):
    services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="w", url="https://hooks.example.com/a",
        events=["release.publish"],
    )
    client = _client(team.owner)
    base = f"/o/{team.organisation.slug}/webhooks/"
    for path in (base, f"{base}{Webhook.objects.get().pk}/"):
        html = client.get(path).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", html), path


def test_the_menu_offers_webhooks_to_owners_and_admins_only(team):
    path = f"/o/{team.organisation.slug}/"
    for role, shown in (("owner", True), ("admin", True), ("editor", False), ("viewer", False)):
        html = _client(team.member(role)).get(path).content.decode()
        assert (f'href="/o/{team.organisation.slug}/webhooks/"' in html) is shown, role
