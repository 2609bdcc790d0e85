"""The counting reads (issue 19): ``set_standings`` and ``instance_marks`` answer what ``InstanceState`` answers.

The pages count thousands of instances with these narrow reads and load only the few they show whole, so the
two must agree on every kind of instance: several processes, mixed versions, pinned, FROZEN, offline, some
processes aged out, other sets only, no process at all.
"""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from anvil_forge.distribution.models import InstanceMode, LiveInstance, LiveProcess
from anvil_forge.distribution.selectors import (
    counted,
    instance_marks,
    instance_states,
    instances_for,
    set_standings,
    sets_standings,
)
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _fleet(live, slug: str, *, size: int = 60) -> None:
    rng = random.Random(19)
    now = timezone.now()
    environment = factories.environment(live.project)
    for index in range(size):
        instance = LiveInstance.objects.create(
            project=live.project,
            environment=environment,
            token=live.token,
            instance_id=f"i-{index}",
            name=f"web-{index:03d}",
            host=f"host-{index % 7}.internal",
            last_seen_at=now,
        )
        for process_id in range(rng.choice([0, 1, 1, 2, 3])):
            follows = rng.random()
            versions = {"other": rng.choice([1, 2])}
            if follows < 0.85:
                versions[slug] = rng.choice([1, 2, 3])
            pins = {slug: rng.choice([1, 2])} if rng.random() < 0.1 else {}
            LiveProcess.objects.create(
                instance=instance,
                process_id=process_id,
                client_version="0.9.0",
                mode=InstanceMode.FROZEN if rng.random() < 0.1 else InstanceMode.ACCEPTING,
                pins=pins,
                versions=versions,
                usage={},
                first_seen_at=now,
                last_seen_at=now,
                expires_at=now - timedelta(minutes=5) if rng.random() < 0.2 else now + timedelta(minutes=5),
            )


@pytest.mark.parametrize("number", [None, 1, 2, 3])
def test_set_standings_agree_with_instance_state_for_every_kind_of_instance(live, number):
    slug = live.prompt_set.slug
    _fleet(live, slug)
    now = timezone.now()
    instances = instances_for(actor=live.team.viewer, project=live.project, now=now)
    environment_id = factories.environment(live.project).pk

    standings = set_standings(counted(instances), slug=slug, numbers={environment_id: number}, now=now)

    expected = {}
    for state in instance_states(instances, now=now):
        standing = state.standing(slug, number)
        if standing is not None:
            expected[state.instance.pk] = state
    assert set(standings) == set(expected)
    assert len({s.standing for s in standings.values()}) >= 4  # the fleet has most kinds
    for pk, state in expected.items():
        got = standings[pk]
        assert got.standing == state.standing(slug, number), state.instance.name
        if got.standing != "offline":
            mix = state.versions_of(slug)
            assert (got.mix(slug).text if got.mix(slug) else None) == (mix.text if mix else None)
        if got.standing == "pinned":
            assert got.pinned_to == state.pinned_to(slug)


def test_sets_standings_read_several_sets_in_one_query(live, django_assert_num_queries):
    slug = live.prompt_set.slug
    _fleet(live, slug, size=20)
    now = timezone.now()
    instances = counted(instances_for(actor=live.team.viewer, project=live.project, now=now))
    with django_assert_num_queries(1):
        both = sets_standings(instances, numbers={slug: {}, "other": {}}, now=now)
    assert both[slug] == set_standings(instances, slug=slug, numbers={}, now=now)
    assert both["other"] == set_standings(instances, slug="other", numbers={}, now=now)


def test_instance_marks_agree_with_instance_state(live):
    _fleet(live, live.prompt_set.slug)
    now = timezone.now()
    instances = instances_for(actor=live.team.viewer, project=live.project, now=now)

    marks = instance_marks(instances, now=now)
    states = instance_states(instances, now=now)

    assert [mark.pk for mark in marks] == [state.instance.pk for state in states]
    for mark, state in zip(marks, states, strict=True):
        assert mark.offline == state.offline
        assert mark.frozen == ("FROZEN" in state.modes)
        assert mark.pinned == bool(state.pins)
        assert mark.versions == {mix.slug: {n for n, _ in mix.numbers} for mix in state.versions}
    assert any(itertools.filterfalse(lambda mark: mark.offline, marks))
