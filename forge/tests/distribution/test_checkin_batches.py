"""Check-ins written in batches (the batch writer's service), and acknowledgements of the releases a process
reports it applied, superseded ones included (issue 18)."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from anvil_forge.distribution.checkin import CheckIn, CheckInError, parse_checkin
from anvil_forge.distribution.checkin_writer import _merged
from anvil_forge.distribution.models import LiveProcess
from anvil_forge.distribution.services import instance_checkins_record
from forge.tests import factories
from forge.tests.distribution.test_services import acks, checkin


def report(live, pid, *, versions, applied=None, instance_id="app-1"):
    return CheckIn(
        instance_id=instance_id,
        name="web-1",
        host="web-1.internal",
        process_count=1,
        client_version="0.2.0",
        mode="ACCEPTING",
        pins={},
        versions=versions,
        usage={},
        process_id=pid,
        applied=applied or {},
    )


def publish(live):
    version = factories.make_approved_version(live.prompt_set, author=live.team.editor, reviewer=live.team.reviewer)
    return factories.make_release(version, actor=live.team.editor)


def test_a_batch_of_periodic_checkins_is_one_upsert_of_their_rows(live):
    slug = live.prompt_set.slug
    for pid in range(1, 41):
        checkin(live, pid, instance_id=f"app-{pid}")
    before = {p.process_id: p.last_seen_at for p in LiveProcess.objects.all()}
    now = timezone.now()
    batch = [(live.token, report(live, pid, versions={slug: 1}, instance_id=f"app-{pid}"), now) for pid in range(1, 41)]
    with CaptureQueriesContext(connection) as queries:
        instance_checkins_record(checkins=batch)
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 1 and "ON CONFLICT" in writes[0]
    assert all(p.last_seen_at == now > before[p.process_id] for p in LiveProcess.objects.all())


def test_a_batch_mixes_new_processes_changes_and_goodbyes(live):
    slug = live.prompt_set.slug
    checkin(live, 1)
    now = timezone.now()
    instance_checkins_record(
        checkins=[
            (live.token, report(live, 2, versions={slug: 1}), now),
            (live.token, report(live, 3, versions={slug: 1}, instance_id="app-2"), now),
        ]
    )
    assert sorted(LiveProcess.objects.values_list("process_id", flat=True)) == [1, 2, 3]


def test_releases_superseded_before_the_checkin_lands_are_acknowledged_from_applied(live):
    slug = live.prompt_set.slug
    checkin(live, 1)  # runs v1
    v2, v3, v4 = publish(live), publish(live), publish(live)
    # The process applied v2, v3 and v4 one after the other; its check-in lands when v4 is current.
    now = timezone.now()
    applied = {slug: [v2.version.number, v3.version.number, v4.version.number]}
    instance_checkins_record(checkins=[(live.token, report(live, 1, versions={slug: 4}, applied=applied), now)])
    assert [len(acks(release)) for release in (v2, v3, v4)] == [1, 1, 1]
    assert acks(v2)[0].data["superseded"] is True and "superseded" not in acks(v4)[0].data
    # Reported again (a retried check-in): still one acknowledgement each.
    instance_checkins_record(checkins=[(live.token, report(live, 1, versions={slug: 4}, applied=applied), now)])
    assert [len(acks(release)) for release in (v2, v3, v4)] == [1, 1, 1]


def test_applied_is_parsed_and_bounded():
    parsed = parse_checkin(b'{"instance_id": "a", "applied": {"core": [2, 3, 3]}}')
    assert parsed.applied == {"core": (2, 3)}
    for bad in (
        b'{"applied": [1]}',
        b'{"applied": {"core": [0]}}',
        b'{"applied": {"core": ' + str(list(range(1, 30))).encode() + b"}}",
    ):
        try:
            parse_checkin(b'{"instance_id": "a", ' + bad[1:])
        except CheckInError as exc:
            assert str(exc).startswith("applied")
        else:
            raise AssertionError(bad)


def test_two_checkins_of_one_process_before_a_batch_keep_the_newest_and_every_applied_version(live):
    older = report(live, 1, versions={"core": 2}, applied={"core": (2,)})
    newer = report(live, 1, versions={"core": 3}, applied={"core": (3,)})
    merged = _merged(older, newer)
    assert merged.versions == {"core": 3} and merged.applied == {"core": (2, 3)}


def test_first_checkins_of_many_new_instances_share_the_environments_reads(live):
    """A fleet restarting (every process new) makes batches of first check-ins: each takes the full path, but the
    environment's current releases are read once per batch (not once per check-in: 12 ms each on the shared
    machine) and long-offline instances are pruned once; each new process stays within 12 queries."""
    slug = live.prompt_set.slug
    now = timezone.now()
    count = 20
    batch = [
        (live.token, report(live, 1000 + n, versions={slug: 1}, instance_id=f"fleet-{n}"), now) for n in range(count)
    ]
    with CaptureQueriesContext(connection) as queries:
        instance_checkins_record(checkins=batch)
    sql = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    current_release_reads = [q for q in sql if q.startswith('SELECT "distribution_release"."id"')]
    prunes = [q for q in sql if q.startswith("DELETE") and "distribution_liveinstance" in q]
    assert len(current_release_reads) == 1, current_release_reads
    assert len(prunes) <= 1, prunes
    assert len(sql) <= 12 * count, f"{len(sql)} queries for {count} first check-ins"
    assert len(acks(live.release)) == count  # each new instance runs the current release: acknowledged, once each
    assert LiveProcess.objects.filter(instance__instance_id__startswith="fleet-").count() == count
