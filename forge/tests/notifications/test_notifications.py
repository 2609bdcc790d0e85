"""Notifications (issue 14): reviewers hear of a submitted set, authors of their version approved or sent back, in
the FORGE (the list at /notifications/, the unread count in the navigation, "mark all read") and by e-mail when
e-mail is configured. A mail server that fails or hangs never breaks or slows the request."""

from __future__ import annotations

import logging
import time

import pytest
from django.core import mail
from django.test import Client, override_settings

from anvil_forge.core.exceptions import Conflict
from anvil_forge.notifications.models import Notification, NotificationKind
from anvil_forge.notifications.services import wait_for_mail
from anvil_forge.prompts import services
from forge.tests import factories

pytestmark = pytest.mark.django_db
MAILS = pytest.mark.django_db(transaction=True)  # e-mail leaves after commit

LOCMEM = {"ANVIL_EMAIL_ENABLED": True, "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
          "ANVIL_PUBLIC_URL": "https://forge.example.com"}


def _with_addresses(team) -> None:
    for role in ("owner", "admin", "editor", "reviewer", "viewer"):
        user = team.member(role)
        user.email = f"{user.get_username()}@example.com"
        user.save()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_submitting_notifies_everyone_who_may_approve_but_not_the_author_nor_other_roles(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, note="Please look")
    notified = set(Notification.objects.filter(version=version).values_list("recipient__username", flat=True))
    assert notified == {team.owner.get_username(), team.admin.get_username(), team.reviewer.get_username()}
    note = Notification.objects.get(recipient=team.reviewer)
    assert note.kind == NotificationKind.SUBMITTED and note.comment == "Please look"
    assert f"{team.editor.get_username()} submitted version 1" in note.text


def test_an_admin_who_submits_is_not_asked_to_review_their_own_version(team, prompt_set):
    version = services.prompt_set_submit(actor=team.admin, prompt_set=prompt_set)
    assert not Notification.objects.filter(version=version, recipient=team.admin).exists()


def test_the_author_hears_of_approval_and_of_changes_requested_with_the_comment(team, prompt_set):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    services.version_request_changes(actor=team.reviewer, version=version, comment="Too long")
    sent_back = Notification.objects.get(recipient=team.editor, kind=NotificationKind.CHANGES_REQUESTED)
    assert sent_back.comment == "Too long" and "requested changes on version 1" in sent_back.text
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    services.version_approve(actor=team.reviewer, version=version, comment="Nice")
    approved = Notification.objects.get(recipient=team.editor, kind=NotificationKind.APPROVED)
    assert "approved version 2" in approved.text and approved.comment == "Nice"


def test_the_list_page_shows_the_unread_count_in_the_navigation_and_marks_all_read(team, prompt_set):
    factories.make_submitted_version(prompt_set, author=team.editor)
    client = _client(team.reviewer)
    page = client.get("/notifications/").content.decode()
    assert f"{team.editor.get_username()} submitted version 1" in page
    note = Notification.objects.get(recipient=team.reviewer)
    assert f'href="/notifications/{note.pk}/"' in page  # leads to the review page, marking it read
    nav = page.split('data-testid="nav-notifications"', 1)[1].split("</a>", 1)[0]
    assert 'title="unread">1<' in nav
    assert "Mark all read" in page
    response = client.post("/notifications/read/")
    assert response.status_code == 302
    assert not Notification.objects.filter(recipient=team.reviewer, read_at__isnull=True).exists()
    assert 'title="unread"' not in client.get("/notifications/").content.decode()
    assert Notification.objects.filter(recipient=team.owner, read_at__isnull=True).exists()  # only one's own


def test_nobody_reads_another_users_or_another_organisations_notifications(team, other_team, prompt_set):
    factories.make_submitted_version(prompt_set, author=team.editor)
    for user in (other_team.owner, team.viewer, team.editor):
        page = _client(user).get("/notifications/").content.decode()
        assert prompt_set.slug not in page
        _client(user).post("/notifications/read/")
    assert Notification.objects.filter(read_at__isnull=True).count() == 3
    assert Client().get("/notifications/").status_code == 302  # anonymous: sent to sign in
    assert Client().post("/notifications/read/").status_code == 302
    assert _client(team.reviewer).get("/notifications/read/").status_code == 405


def test_a_member_removed_since_no_longer_sees_that_organisations_notifications(team, prompt_set):
    from anvil_forge.accounts.models import Membership

    factories.make_submitted_version(prompt_set, author=team.editor)
    services.membership_remove(
        actor=team.owner, membership=Membership.objects.get(user=team.reviewer, organisation=team.organisation)
    )
    assert prompt_set.slug not in _client(team.reviewer).get("/notifications/").content.decode()


@MAILS
@override_settings(**LOCMEM)
def test_with_email_configured_reviewers_and_authors_get_a_plain_text_mail_with_a_link(team, prompt_set):
    _with_addresses(team)
    mail.outbox.clear()
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, note="Shorter greeting")
    wait_for_mail()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(
        f"{team.member(r).get_username()}@example.com" for r in ("owner", "admin", "reviewer")
    )
    letter = mail.outbox[0]
    link = f"https://forge.example.com/o/{team.organisation.slug}/p/{prompt_set.project.slug}/s/{prompt_set.slug}/review/"
    assert link in letter.body and "Shorter greeting" in letter.body
    assert letter.content_subtype == "plain" and not letter.alternatives
    mail.outbox.clear()
    services.version_request_changes(actor=team.reviewer, version=version, comment="Say hi")
    wait_for_mail()
    assert [m.to for m in mail.outbox] == [[f"{team.editor.get_username()}@example.com"]]
    assert "Say hi" in mail.outbox[0].body and "Changes requested" in mail.outbox[0].subject


@MAILS
@override_settings(ANVIL_EMAIL_ENABLED=False, EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_without_email_configured_nothing_is_mailed_but_the_forge_notifies(team, prompt_set):
    _with_addresses(team)
    mail.outbox.clear()
    factories.make_submitted_version(prompt_set, author=team.editor)
    wait_for_mail()
    assert mail.outbox == [] and Notification.objects.count() == 3


class _Broken:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("mail server down")


class _Slow(_Broken):
    def send_messages(self, messages):
        time.sleep(2)
        return len(messages)


@MAILS
@override_settings(**{**LOCMEM, "EMAIL_BACKEND": f"{__name__}._Broken"})
def test_a_failing_mail_server_does_not_break_the_submit_and_is_logged(team, prompt_set, caplog):
    _with_addresses(team)
    caplog.set_level(logging.WARNING)
    response = _client(team.editor).post(
        f"/o/{team.organisation.slug}/p/{prompt_set.project.slug}/s/{prompt_set.slug}/submit/",
        {"base_revision": prompt_set.revision},
    )
    wait_for_mail()
    assert response.status_code == 302
    assert Notification.objects.count() == 3
    assert "mail server down" in caplog.text


@MAILS
@override_settings(**{**LOCMEM, "EMAIL_BACKEND": f"{__name__}._Slow"})
def test_a_slow_mail_server_does_not_slow_the_request(team, prompt_set):
    _with_addresses(team)
    started = time.monotonic()
    response = _client(team.editor).post(
        f"/o/{team.organisation.slug}/p/{prompt_set.project.slug}/s/{prompt_set.slug}/submit/",
        {"base_revision": prompt_set.revision},
    )
    assert response.status_code == 302
    assert time.monotonic() - started < 1.5  # three letters at 2 s each would take 6 s in the request
    wait_for_mail(timeout=10)


def test_a_submit_that_fails_notifies_nobody(team, prompt_set):
    factories.make_submitted_version(prompt_set, author=team.editor)
    before = Notification.objects.count()
    with pytest.raises(Conflict):  # already in review
        services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    assert Notification.objects.count() == before


def test_following_a_notification_marks_it_read_and_leads_to_its_page(team, prompt_set):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    mine = Notification.objects.get(recipient=team.reviewer, version=version)
    base = f"/o/{team.organisation.slug}/p/{prompt_set.project.slug}/s/{prompt_set.slug}/"
    response = _client(team.reviewer).get(f"/notifications/{mine.pk}/")
    assert response.status_code == 302 and response["Location"] == base + "review/"
    mine.refresh_from_db()
    assert mine.read_at is not None
    assert Notification.objects.get(recipient=team.owner, version=version).read_at is None
    services.version_request_changes(actor=team.reviewer, version=version, comment="No")
    answer = Notification.objects.get(recipient=team.editor, kind=NotificationKind.CHANGES_REQUESTED)
    assert _client(team.editor).get(f"/notifications/{answer.pk}/")["Location"] == base


def test_nobody_follows_another_users_notification(team, other_team, prompt_set):
    factories.make_submitted_version(prompt_set, author=team.editor)
    theirs = Notification.objects.get(recipient=team.reviewer)
    for user in (team.owner, team.viewer, other_team.owner):
        response = _client(user).get(f"/notifications/{theirs.pk}/")
        assert response.status_code == 404
        # The owner may review the version themselves (their navigation links to it); the others learn nothing of it.
        if user is not team.owner:
            assert prompt_set.slug not in response.content.decode()
    assert Client().get(f"/notifications/{theirs.pk}/").status_code == 302
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_once_a_version_is_reviewed_the_other_reviewers_requests_are_marked_read(team, prompt_set):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    services.version_approve(actor=team.reviewer, version=version)
    asked = Notification.objects.filter(version=version, kind=NotificationKind.SUBMITTED)
    assert asked.count() == 3 and not asked.filter(read_at__isnull=True).exists()
    assert Notification.objects.get(recipient=team.editor, kind=NotificationKind.APPROVED).read_at is None
