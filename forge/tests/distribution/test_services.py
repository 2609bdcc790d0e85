"""Check-ins of processes: one instance per application and host, one row per process, goodbyes, aging out,
acknowledgements once every live process runs a release, pruning of old rows, and the cost of a check-in."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.checkin import CheckIn
from anvil_forge.distribution.models import OFFLINE_RETENTION, LiveInstance, LiveProcess
from anvil_forge.distribution.selectors import distribution_state, instance_states, instances_for
from anvil_forge.distribution.services import instance_checkin
from forge.tests import factories


def checkin(live, pid=None, *, instance_id="app-1", versions=None, mode="ACCEPTING", goodbye=False, **extra):
    fields = {"process_id": pid} if pid is not None else {}
    return instance_checkin(
        token=live.token,
        checkin=CheckIn(
            instance_id=instance_id,
            name=extra.pop("name", "web-1"),
            host=extra.pop("host", "web-1.internal"),
            process_count=1,
            client_version="0.2.0",
            mode=mode,
            pins=extra.pop("pins", {}),
            versions={live.prompt_set.slug: 1} if versions is None else versions,
            usage=extra.pop("usage", {}),
            goodbye=goodbye,
            **fields,
            **extra,
        ),
    )


def production_row(live):
    state = distribution_state(actor=live.team.viewer, project=live.project)
    [row] = [r for r in state if r.prompt_set == live.prompt_set and r.environment.slug == "production"]
    return row


def states(live):
    return instance_states(instances_for(actor=live.team.viewer, project=live.project))


def age_out(*pids):
    LiveProcess.objects.filter(process_id__in=pids).update(expires_at=timezone.now() - timedelta(seconds=1))


def publish_v2(live):
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    return factories.make_release(version, actor=live.team.editor)


def acks(release):
    return list(AuditEvent.objects.filter(action="release.acknowledge", object_id=str(release.pk)))


def test_two_processes_of_one_instance_are_one_instance_with_two_process_rows(live):
    checkin(live, 101)
    checkin(live, 102)
    checkin(live, 101)

    instance = LiveInstance.objects.get()
    assert sorted(LiveProcess.objects.filter(instance=instance).values_list("process_id", flat=True)) == [101, 102]
    row = production_row(live)
    assert (row.running, row.total, row.versions) == (1, 1, {1: 1}), "counted as one instance, not two"
    [state] = states(live)
    assert [p.process_id for p in state.processes] == [101, 102] and state.shows_processes


def test_an_old_client_without_process_id_is_one_process_updated_in_place(live):
    checkin(live)
    checkin(live, mode="FROZEN")

    [process] = LiveProcess.objects.all()
    assert process.process_id == 0 and process.mode == "FROZEN"
    [state] = states(live)
    assert not state.shows_processes and state.modes == ["FROZEN"]
    assert production_row(live).frozen == 1


def test_old_clients_with_a_random_id_per_process_stay_one_instance_each(live):
    checkin(live, instance_id="5f0c2b7e")
    checkin(live, instance_id="9a1d33c0")
    assert LiveInstance.objects.count() == 2 and LiveProcess.objects.count() == 2
    assert production_row(live).running == 2


def test_goodbye_takes_that_process_out_at_once_and_leaves_the_others(live):
    checkin(live, 101)
    checkin(live, 102)

    checkin(live, 102, goodbye=True)

    [state] = states(live)
    assert [p.process_id for p in state.processes] == [101]
    assert production_row(live).running == 1


def test_goodbye_of_the_last_process_leaves_the_instance_offline_not_behind(live):
    checkin(live, 101)
    checkin(live, 101, goodbye=True)
    publish_v2(live)

    [state] = states(live)
    assert state.offline and state.versions[0].text == "v1", "it keeps what it last ran"
    row = production_row(live)
    assert (row.running, row.behind, row.offline, row.total, row.versions) == (0, 0, 1, 1, {})


def test_goodbye_of_an_unknown_process_or_instance_changes_nothing(live):
    assert checkin(live, 7, instance_id="never-seen", goodbye=True) is None
    checkin(live, 101)
    checkin(live, 999, goodbye=True)
    assert not LiveInstance.objects.filter(instance_id="never-seen").exists()
    assert list(LiveProcess.objects.values_list("process_id", flat=True)) == [101]
    assert not states(live)[0].offline


def test_an_aged_out_process_is_not_counted(live):
    checkin(live, 101)
    checkin(live, 102, versions={})  # an old worker that never took the set would make the instance "behind"
    publish_v2(live)
    checkin(live, 101, versions={live.prompt_set.slug: 2})
    checkin(live, 102, versions={live.prompt_set.slug: 1})
    assert production_row(live).behind == 1

    age_out(102)

    [state] = states(live)
    assert [p.process_id for p in state.processes] == [101]
    row = production_row(live)
    assert (row.running, row.behind, row.versions) == (1, 0, {2: 1})


def test_an_instance_whose_processes_all_aged_out_is_offline(live):
    checkin(live, 101)
    age_out(101)
    [state] = states(live)
    assert state.offline
    assert production_row(live).offline == 1


def test_an_aged_out_process_that_checks_in_again_is_live_again(live):
    checkin(live, 101)
    age_out(101)
    checkin(live, 101)
    assert not states(live)[0].offline


def test_processes_on_different_versions_show_the_mix_and_the_instance_is_behind(live):
    publish_v2(live)
    slug = live.prompt_set.slug
    for pid in (101, 102, 103):
        checkin(live, pid, versions={slug: 2})
    checkin(live, 104, versions={slug: 1})

    [state] = states(live)
    [mix] = state.versions
    assert mix.text == "v2 on 3 of 4 processes, v1 on 1"
    assert state.standing(slug, 2) == "behind"
    row = production_row(live)
    assert (row.running, row.behind, row.total, row.versions) == (0, 1, 1, {2: 1, 1: 1})


def test_one_frozen_process_makes_the_instance_frozen_and_one_pinned_process_pinned(live):
    slug = live.prompt_set.slug
    checkin(live, 101)
    checkin(live, 102, mode="FROZEN")
    assert states(live)[0].standing(slug, 1) == "frozen"
    checkin(live, 103, pins={slug: 1})
    assert states(live)[0].standing(slug, 1) == "pinned"
    assert states(live)[0].pinned_to(slug) == "pinned to v1"


def test_the_release_is_acknowledged_once_every_live_process_runs_it(live):
    slug = live.prompt_set.slug
    checkin(live, 101)
    checkin(live, 102)
    release = publish_v2(live)

    checkin(live, 101, versions={slug: 2})
    assert acks(release) == [], "one of two processes is not the instance"
    checkin(live, 102, versions={slug: 2})

    [ack] = acks(release)
    assert ack.data["instance_id"] == "app-1" and ack.data["processes"] == 2 and ack.data["version"] == 2


def test_a_restarted_process_does_not_acknowledge_the_release_again(live):
    release = publish_v2(live)
    checkin(live, 101, versions={live.prompt_set.slug: 2})
    checkin(live, 101, goodbye=True)
    checkin(live, 202, versions={live.prompt_set.slug: 2})
    assert len(acks(release)) == 1


def test_the_goodbye_of_the_last_process_behind_acknowledges_for_the_rest(live):
    slug = live.prompt_set.slug
    checkin(live, 101)
    checkin(live, 102)
    release = publish_v2(live)
    checkin(live, 101, versions={slug: 2})

    checkin(live, 102, goodbye=True)

    assert len(acks(release)) == 1


def test_an_aged_out_process_does_not_hold_back_the_acknowledgement(live):
    slug = live.prompt_set.slug
    checkin(live, 101)
    checkin(live, 102)
    release = publish_v2(live)
    age_out(102)
    checkin(live, 101, versions={slug: 2})
    assert len(acks(release)) == 1


def test_a_periodic_checkin_of_a_known_process_is_one_small_write(live):
    checkin(live, 101, usage={"welcome.message": ["name"]})
    with CaptureQueriesContext(connection) as queries:
        checkin(live, 101, usage={"welcome.message": ["name"]})
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
    assert len(writes) == 1 and "distribution_liveprocess" in writes[0]
    assert '"usage"' not in writes[0], "unchanged usage is not rewritten"
    assert len(queries) <= 4, [q["sql"] for q in queries]  # the lookup, the update (and savepoints in tests)


def test_a_periodic_checkin_moves_when_the_process_counts_as_gone(live):
    checkin(live, 101, checkin_interval=10)
    first = LiveProcess.objects.get()
    checkin(live, 101, checkin_interval=10)
    again = LiveProcess.objects.get()
    assert again.last_seen_at > first.last_seen_at
    assert timedelta(seconds=29) < again.expires_at - again.last_seen_at <= timedelta(seconds=30)


def test_a_new_process_deletes_the_rows_of_processes_gone_before(live):
    checkin(live, 101)
    checkin(live, 102)
    checkin(live, 101, goodbye=True)
    age_out(102)
    checkin(live, 103)
    assert list(LiveProcess.objects.values_list("process_id", flat=True)) == [103]


def test_a_new_instance_deletes_instances_offline_for_longer_than_the_retention(live):
    checkin(live, 101, instance_id="long-gone", name="a")
    checkin(live, 101, instance_id="recently-gone", name="b")
    checkin(live, 101, instance_id="slow-but-live", name="c", checkin_interval=86_400)
    long_ago = timezone.now() - OFFLINE_RETENTION - timedelta(hours=1)
    LiveInstance.objects.update(last_seen_at=long_ago)
    LiveProcess.objects.filter(instance__instance_id="long-gone").update(last_seen_at=long_ago, expires_at=long_ago)
    LiveProcess.objects.filter(instance__instance_id="recently-gone").update(expires_at=timezone.now())
    LiveProcess.objects.filter(instance__instance_id="slow-but-live").update(last_seen_at=long_ago)
    assert [s.instance.instance_id for s in states(live)] == ["recently-gone", "slow-but-live"], "not listed"

    checkin(live, 5, instance_id="newcomer")

    assert sorted(LiveInstance.objects.values_list("instance_id", flat=True)) == [
        "newcomer",
        "recently-gone",
        "slow-but-live",
    ]
    assert not LiveProcess.objects.filter(instance__instance_id="long-gone").exists()


def test_a_renamed_instance_is_updated_and_keeps_its_processes(live):
    checkin(live, 101)
    checkin(live, 102)
    checkin(live, 101, name="web-renamed")
    instance = LiveInstance.objects.get()
    assert instance.name == "web-renamed" and instance.processes.count() == 2
