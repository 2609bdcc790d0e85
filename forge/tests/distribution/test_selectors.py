"""Distribution state for the web UI: instance counts per set and environment, publish warnings from
reported usage, acknowledgements, and scoping by the actor's organisations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.core.exceptions import NotFound, PermissionDenied
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import LiveInstance, LiveProcess
from anvil_forge.distribution.selectors import (
    acknowledgements_for,
    distribution_state,
    instances_for,
    publish_warnings,
    tokens_for,
)
from anvil_forge.distribution.services import instance_checkin
from forge.tests import factories


def checkin(live, instance_id, *, versions=None, pins=None, mode="ACCEPTING", usage=None) -> LiveInstance:
    return instance_checkin(
        token=live.token,
        checkin=CheckIn(
            instance_id=instance_id,
            name=instance_id,
            host=f"{instance_id}.internal",
            process_count=1,
            client_version="0.1.0",
            mode=mode,
            pins=pins or {},
            versions=versions or {},
            usage=usage or {},
        ),
    )


def production_row(state, live):
    [row] = [r for r in state if r.prompt_set == live.prompt_set and r.environment.slug == "production"]
    return row


def test_distribution_state_counts_running_behind_frozen_pinned_and_offline_instances(live):
    slug = live.prompt_set.slug
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    factories.make_release(version, actor=live.team.editor)
    checkin(live, "running-1", versions={slug: 2})
    checkin(live, "running-2", versions={slug: 2})
    checkin(live, "behind", versions={slug: 1})
    checkin(live, "frozen", versions={slug: 1}, mode="FROZEN")
    checkin(live, "pinned", versions={slug: 1}, pins={slug: 1})
    offline = checkin(live, "offline", versions={slug: 2})
    LiveProcess.objects.filter(instance=offline).update(expires_at=timezone.now() - timedelta(minutes=7))
    checkin(live, "other-set-only", versions={"something-else": 4})

    row = production_row(distribution_state(actor=live.team.viewer, project=live.project), live)

    assert row.version == 2 and row.release is not None
    assert (row.running, row.behind, row.frozen, row.pinned, row.offline, row.total) == (2, 1, 1, 1, 1, 6)
    assert row.versions == {2: 2, 1: 3}


def test_distribution_state_lists_every_set_and_environment_even_without_release(live):
    state = distribution_state(actor=live.team.viewer, project=live.project)
    staging = [r for r in state if r.environment.slug == "staging"]
    assert staging and staging[0].release is None and staging[0].version is None and staging[0].total == 0


def test_distribution_state_is_not_for_another_organisation(live, other_team):
    with pytest.raises(NotFound):
        distribution_state(actor=other_team.owner, project=live.project)


def test_instances_are_only_visible_to_members_of_their_organisation(live, other_team):
    checkin(live, "web-1", versions={live.prompt_set.slug: 1})
    assert [i.instance_id for i in instances_for(actor=live.team.viewer)] == ["web-1"]
    assert [i.instance_id for i in instances_for(actor=live.team.viewer, project=live.project)] == ["web-1"]
    assert list(instances_for(actor=other_team.owner)) == []
    assert list(instances_for(actor=other_team.owner, project=live.project)) == []


def test_tokens_are_listed_for_token_managers_only(live):
    assert list(tokens_for(actor=live.team.admin, project=live.project)) == [live.token]
    with pytest.raises(PermissionDenied):
        tokens_for(actor=live.team.editor, project=live.project)


def test_acknowledgements_list_the_instances_that_took_a_release(live):
    checkin(live, "web-1", versions={live.prompt_set.slug: 1})
    checkin(live, "web-2", versions={live.prompt_set.slug: 1})
    assert sorted(e.data["instance_id"] for e in acknowledgements_for(release=live.release)) == ["web-1", "web-2"]


def test_publish_warns_about_a_prompt_id_connected_instances_use_that_the_version_lacks(live):
    from anvil_forge.prompts import services
    from anvil_forge.prompts.models import Prompt

    slug = live.prompt_set.slug
    checkin(live, "web-1", versions={slug: 1}, usage={"welcome.message": ["name"], "errors.not_found": ["thing"]})
    services.prompt_set_reopen(actor=live.team.editor, prompt_set=live.prompt_set)
    prompt = Prompt.objects.get(prompt_set=live.prompt_set, key="errors.not_found")
    services.prompt_delete(actor=live.team.editor, prompt=prompt, base_revision=prompt.revision)
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)

    warnings = publish_warnings(version=version, environment=live.token.environment)

    assert warnings == [f"Version {version.number} has no prompt 'errors.not_found', which instance web-1 used."]


def test_publish_warns_about_a_required_variable_the_application_does_not_pass(live):
    slug = live.prompt_set.slug
    checkin(live, "web-1", versions={slug: 1}, usage={"welcome.message": ["plan"]})  # never passes "name"
    warnings = publish_warnings(version=live.release.version, environment=live.token.environment)
    assert len(warnings) == 1
    assert "requires the variable 'name'" in warnings[0] and "web-1" in warnings[0]


def test_publish_warnings_ignore_offline_instances_and_other_environments(live):
    slug = live.prompt_set.slug
    offline = checkin(live, "old", versions={slug: 1}, usage={"gone.prompt": []})
    LiveProcess.objects.filter(instance=offline).update(expires_at=timezone.now() - timedelta(hours=1))
    staging = factories.environment(live.project, "staging")
    assert publish_warnings(version=live.release.version, environment=live.token.environment) == []
    assert publish_warnings(version=live.release.version, environment=staging) == []


def test_publish_warnings_are_empty_when_usage_matches(live):
    checkin(live, "web-1", versions={live.prompt_set.slug: 1}, usage={"welcome.message": ["name", "plan"]})
    assert publish_warnings(version=live.release.version, environment=live.token.environment) == []
