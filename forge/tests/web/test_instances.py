"""Instances with processes on the pages: the instances page groups processes under their instance, and the
project, publish and release pages count instances, not processes, and leave offline instances out."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.distribution import services as distribution
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import LiveProcess
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(team, project):
    production = factories.environment(project)
    made, _ = distribution.token_create(
        actor=team.owner, project=project, environment=production, kind="live", name="t"
    )
    return made


def checkin(token, instance_id, pid=None, *, versions, goodbye=False, mode="ACCEPTING"):
    extra = {} if pid is None else {"process_id": pid}
    return distribution.instance_checkin(
        token=token,
        checkin=CheckIn(
            instance_id=instance_id,
            name=f"{instance_id}-name",
            host=f"{instance_id}.internal",
            process_count=1,
            client_version="0.2.0",
            mode=mode,
            pins={},
            versions=versions,
            usage={},
            goodbye=goodbye,
            **extra,
        ),
    )


def instance_blocks(body: str) -> dict[str, str]:
    """The instances page's ``<tbody>`` of each instance, by instance id."""
    return dict(re.findall(r'<tbody data-testid="instance" data-instance-id="([^"]+)">(.*?)</tbody>', body, re.S))


def process_ids(block: str) -> list[int]:
    return [int(pid) for pid in re.findall(r'data-testid="process" data-process-id="(\d+)"', block)]


def test_instances_page_groups_live_processes_under_their_instance(as_user, team, token, urls, prompt_set):
    slug = prompt_set.slug
    checkin(token, "app-a", 101, versions={slug: 1})
    checkin(token, "app-a", 102, versions={slug: 2})
    checkin(token, "app-a", 103, versions={slug: 1})
    checkin(token, "app-a", 103, versions={slug: 1}, goodbye=True)  # exited cleanly
    checkin(token, "app-a", 104, versions={slug: 1})
    LiveProcess.objects.filter(process_id=104).update(expires_at=timezone.now() - timedelta(seconds=5))  # aged out
    checkin(token, "old-client", versions={slug: 1}, mode="FROZEN")
    checkin(token, "stopped", 7, versions={slug: 1})
    checkin(token, "stopped", 7, versions={slug: 1}, goodbye=True)

    body = as_user(team.viewer).get(urls["instances"]).content.decode()

    blocks = instance_blocks(body)
    assert set(blocks) == {"app-a", "old-client", "stopped"}, "one group per instance, not per process"
    assert process_ids(blocks["app-a"]) == [101, 102]
    assert 'pid <span class="mono">101</span>' in blocks["app-a"]
    assert f"{slug} v2 on 1 of 2 processes, v1 on 1" in blocks["app-a"]
    assert "(2 processes)" in blocks["app-a"] and "offline" not in blocks["app-a"]
    assert process_ids(blocks["old-client"]) == [], "a client without process ids is one process: no rows"
    assert "FROZEN" in blocks["old-client"] and f"{slug} v1" in blocks["old-client"]
    assert "(1 process)" in blocks["old-client"]
    assert process_ids(blocks["stopped"]) == [] and 'badge-warn">offline<' in blocks["stopped"]


def test_project_page_counts_an_instance_of_many_processes_once(as_user, team, token, urls, prompt_set):
    factories.make_release(
        factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer), actor=team.editor
    )
    for pid in (1, 2, 3):
        checkin(token, "app-a", pid, versions={prompt_set.slug: 1})
    checkin(token, "gone", 9, versions={prompt_set.slug: 1})
    checkin(token, "gone", 9, versions={prompt_set.slug: 1}, goodbye=True)

    body = as_user(team.viewer).get(urls["project"]).content.decode()

    assert ">1 running<" in body and ">1 offline<" in body and "behind" not in body


def test_release_page_waits_for_every_process_and_counts_the_instance_once(as_user, team, token, urls, prompt_set):
    slug = prompt_set.slug
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    checkin(token, "app-a", 101, versions={slug: 1})
    checkin(token, "app-a", 102, versions={slug: 1})
    checkin(token, "stopped", 5, versions={slug: 1})
    checkin(token, "stopped", 5, versions={slug: 1}, goodbye=True)
    from anvil_forge.prompts import services

    prompt_set.refresh_from_db()
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Hi {{ name }}!", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)

    publish = as_user(team.editor).get(urls["base"] + f"versions/{v2.number}/publish/production/").content.decode()
    assert 'data-testid="takers">1<' in publish and 'data-testid="offline">1<' in publish

    release = factories.make_release(v2, actor=team.editor)
    acks_url = urls["base"] + f"releases/{release.pk}/acks/"
    viewer = as_user(team.viewer)
    checkin(token, "app-a", 101, versions={slug: 2})
    body = viewer.get(acks_url).content.decode()
    assert ">0 applied<" in body and "1 waiting" in body
    assert "(runs v2 on 1 of 2 processes, v1 on 1)" in body
    assert "Offline, not counted: stopped-name" in body

    checkin(token, "app-a", 102, versions={slug: 2})
    body = viewer.get(acks_url).content.decode()
    assert ">1 applied<" in body and "waiting" not in body and body.count('data-testid="ack"') == 1
