"""Scheduled releases on the pages: "Publish at…" on the publish page, the list with Cancel on the versions page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.models import ScheduledRelease, ScheduleState
from anvil_forge.distribution.scheduling import scheduled_releases_fire
from anvil_forge.web.views.scheduling import form_time
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(team, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return v1, v2


def _local_in_two_hours(offset_minutes: int) -> tuple[str, datetime]:
    """A ``datetime-local`` value two hours from now in a zone ``offset_minutes`` east of UTC, and its UTC time."""
    utc = (timezone.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    local = utc + timedelta(minutes=offset_minutes)
    return local.strftime("%Y-%m-%dT%H:%M"), utc


def test_form_time_reads_the_viewers_wall_clock_with_its_offset():
    assert form_time("2027-03-01T09:30", "120") == datetime(2027, 3, 1, 7, 30, tzinfo=UTC)
    assert form_time("2027-03-01T09:30", "-300") == datetime(2027, 3, 1, 14, 30, tzinfo=UTC)
    assert form_time("2027-03-01T09:30", "") == datetime(2027, 3, 1, 9, 30, tzinfo=UTC)  # no JavaScript: UTC
    for value, offset, field in [("", "0", "at"), ("soon", "0", "at"), ("2027-03-01T09:30", "x", "tz_offset")]:
        with pytest.raises(ApplicationError) as refused:
            form_time(value, offset)
        assert refused.value.extra == {"field": field}


def test_publish_page_offers_publish_at_with_the_zone_filled_by_a_static_script(as_user, team, urls, two_versions):
    body = as_user(team.editor).get(urls["base"] + "versions/2/publish/production/").content.decode()
    assert 'type="datetime-local"' in body and 'name="tz_offset"' in body and "Publish at…" in body
    assert 'action="' + urls["base"] + 'versions/2/schedule/production/"' in body
    assert "anvil/scheduling.js" in body
    assert "<script>" not in body  # scripts come from files only (Content-Security-Policy)
    viewer = as_user(team.viewer).get(urls["base"] + "versions/2/publish/production/").content.decode()
    assert "Publish at…" not in viewer


def test_scheduling_from_the_page_lists_it_and_cancel_cancels_it(as_user, team, urls, two_versions):
    client = as_user(team.editor)
    local, utc = _local_in_two_hours(offset_minutes=120)

    response = client.post(urls["base"] + "versions/2/schedule/production/", {"at": local, "tz_offset": "120"})

    assert response.status_code == 302 and response["Location"] == urls["versions"]
    scheduled = ScheduledRelease.objects.get()
    assert (scheduled.at, scheduled.state, scheduled.created_by) == (utc, ScheduleState.PENDING, team.editor)
    body = client.get(urls["versions"]).content.decode()
    assert "Scheduled releases" in body and f'datetime="{utc.isoformat()}"' in body
    assert f"scheduled/{scheduled.pk}/cancel/" in body and "will be published to production" in body
    assert f"scheduled/{scheduled.pk}/cancel/" not in as_user(team.viewer).get(urls["versions"]).content.decode()

    response = client.post(urls["base"] + f"scheduled/{scheduled.pk}/cancel/")

    assert response.status_code == 302
    scheduled.refresh_from_db()
    assert scheduled.state == ScheduleState.CANCELLED
    body = client.get(urls["versions"]).content.decode()
    assert 'data-testid="scheduled-cancelled"' in body and f"scheduled/{scheduled.pk}/cancel/" not in body


def test_a_refused_schedule_goes_back_to_the_publish_page_with_the_reason(as_user, team, urls, two_versions):
    client = as_user(team.editor)
    response = client.post(urls["base"] + "versions/1/schedule/production/", {"at": "2027-03-01T09:30"})
    assert response.status_code == 302 and response["Location"].endswith("versions/1/publish/production/")
    assert "never step back" in client.get(response["Location"]).content.decode()
    assert client.post(urls["base"] + "versions/2/schedule/production/", {"at": "soon"}).status_code == 400
    assert as_user(team.reviewer).post(
        urls["base"] + "versions/2/schedule/production/", {"at": "2027-03-01T09:30"}
    ).status_code in (302, 403)
    assert ScheduledRelease.objects.count() == 0


def test_a_late_and_a_failed_scheduled_release_say_so_on_the_versions_page(as_user, team, project, urls, two_versions):
    from anvil_forge.distribution.scheduling import release_schedule

    at = timezone.now() - timedelta(minutes=3)
    release_schedule(
        actor=team.editor,
        version=two_versions[1],
        environment=factories.environment(project),
        at=at,
        now=at - timedelta(minutes=1),
    )
    scheduled_releases_fire()
    body = as_user(team.viewer).get(urls["versions"]).content.decode()
    assert 'data-testid="scheduled-published"' in body and 'data-testid="scheduled-late"' in body
