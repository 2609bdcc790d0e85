"""One organisation with something of everything, and a stranger: what the security tests attack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from anvil_forge.accounts import services as account_services
from anvil_forge.accounts.models import Membership
from anvil_forge.distribution import services as distribution_services
from anvil_forge.peering import services as peering_services
from anvil_forge.peering.models import RemoteProjectReference
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt
from anvil_forge.webhooks import services as webhook_services
from anvil_forge.webhooks.models import Delivery
from forge.tests import factories

PEER_TOKEN = "anvil_peer_" + "p" * 43


@dataclass
class World:
    team: factories.Team
    outsider: Any
    values: dict[str, Any]


def build_world() -> World:
    """Sets ``core`` (LIVE; v1 live in production, v2 approved), ``review`` (v1 in review), ``locked``;
    a live token, a peer (unreachable) with a connected project; and another organisation's owner."""
    team = factories.make_org_with_members()
    other = factories.make_org_with_members()
    project = factories.make_project(team.organisation, actor=team.owner)
    webhook, _ = webhook_services.webhook_create(
        actor=team.owner, organisation=team.organisation, name="hidden-hook", url="https://hooks.example.com/anvil",
        events=["release.publish"],
    )
    core = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="core")
    v1 = factories.make_approved_version(core, author=team.editor, reviewer=team.reviewer)
    release = factories.make_release(v1, actor=team.editor)
    factories.make_approved_version(core, author=team.editor, reviewer=team.reviewer)
    services.prompt_set_reopen(actor=team.editor, prompt_set=core)
    review = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="review")
    factories.make_submitted_version(review, author=team.editor)
    locked = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="locked")
    factories.make_approved_version(locked, author=team.editor, reviewer=team.reviewer)
    token, _ = distribution_services.token_create(
        actor=team.owner, project=project, environment=factories.environment(project), kind="live", name="web"
    )
    peer = peering_services.peer_create(
        actor=team.owner, organisation=team.organisation, name="hidden-peer", url="http://127.0.0.1:9", token=PEER_TOKEN
    )
    reference = RemoteProjectReference.objects.create(
        organisation=team.organisation, peer=peer, remote_organisation="racme", remote_project="rproject",
        snapshot={"project": {}, "sets": []},
    )
    invitation = account_services.invitation_create(
        actor=team.owner, organisation=team.organisation, role="viewer", base_url="http://testserver"
    ).invitation
    from anvil_forge.distribution.rollouts import rollout_start

    rollout = rollout_start(  # of core v2 in production (issue 16): its page and actions
        actor=team.editor, version=core.versions.get(number=2), environment=factories.environment(project)
    )
    import datetime

    from anvil_forge.distribution.scheduling import release_schedule

    soon = timezone.now() + datetime.timedelta(days=1)
    scheduled = release_schedule(  # of core v2 in staging (issue 16): its cancel action
        actor=team.editor, version=core.versions.get(number=2),
        environment=project.environments.get(slug="staging"), at=soon,
    )
    core.refresh_from_db()
    values = {
        "org": team.organisation.slug,
        "project": project.slug,
        "token_id": token.pk,
        "release_id": release.pk,
        "rollout_id": rollout.pk,
        "scheduled_id": scheduled.pk,
        "future_at": (soon + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "reference_id": reference.pk,
        "set_id": core.pk,
        "core_revision": core.revision,
        "prompt_revision": Prompt.objects.get(prompt_set=core, key="welcome.message").revision,
        "other_org": other.organisation.slug,
        "invitation_id": invitation.pk,
        "membership_id": Membership.objects.get(user=team.viewer, organisation=team.organisation).pk,
        "webhook_id": webhook.pk,
        "delivery_id": Delivery.objects.get(webhook=webhook).pk,  # the publish of core v1
    }
    return World(team=team, outsider=other.owner, values=values)
