"""Writes of the notifications app: remembering where a user works, and telling people about reviews.

Notifications are written inside the caller's transaction (the review services in ``prompts.services`` call
them), so a submit that rolls back notifies nobody. E-mail leaves only after commit, from a daemon thread: a
slow or broken mail server never slows or fails the request (``accounts.mail.send`` logs and moves on).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils import timezone

from anvil_forge.accounts import mail
from anvil_forge.accounts.models import Membership
from anvil_forge.accounts.permissions import ROLE_CAPABILITIES, Actor, Capability
from anvil_forge.notifications.models import LastVisit, Notification, NotificationKind

logger = logging.getLogger(__name__)

__all__ = ["last_visit_record", "notifications_mark_read", "notify_reviewed", "notify_submitted", "wait_for_mail"]

MAIL_EXIT_WAIT_SECONDS = 10.0  # at exit, how long unsent notification mail may hold the process
VISIT_REFRESH = timedelta(minutes=1)  # how stale a remembered place may get before it is written again
_REVIEW_ROLES = [role for role, caps in ROLE_CAPABILITIES.items() if Capability.REVIEW in caps]
_mail_threads: list[threading.Thread] = []
_mail_lock = threading.Lock()


def last_visit_record(*, user: Any, project: Any, prompt_set: Any = None) -> None:
    """Remember that ``user`` opened ``project`` (and ``prompt_set`` in it): signing in lands there next time.

    Opening a project's page keeps the set last opened in that project (the user is on their way back to it).
    Pages call this on every view, so the row is written only when the place changed or a minute passed, and a
    write that fails (a busy database) is logged, never raised: remembering must not break the page.
    """
    if getattr(user, "pk", None) is None:
        return
    now = timezone.now()
    organisation_id = project.organisation_id
    rows = LastVisit.objects.filter(user=user, organisation_id=organisation_id)
    known = rows.values("project_id", "prompt_set_id", "visited_at").first()
    same_project = known is not None and known["project_id"] == project.pk
    prompt_set_id = prompt_set.pk if prompt_set is not None else (known["prompt_set_id"] if same_project else None)
    if same_project and known["prompt_set_id"] == prompt_set_id and now - known["visited_at"] < VISIT_REFRESH:
        return
    try:
        with transaction.atomic():
            if known is not None:
                rows.update(project=project, prompt_set_id=prompt_set_id, visited_at=now)
            else:
                LastVisit.objects.get_or_create(
                    user=user,
                    organisation_id=organisation_id,
                    defaults={"project": project, "prompt_set_id": prompt_set_id, "visited_at": now},
                )
    except DatabaseError as exc:
        logger.warning("could not remember %s's last place (%s): %s", user, project, exc)


def notify_submitted(*, actor: Actor, version: Any, note: str = "") -> list[Notification]:
    """Tell everyone who may approve ``version`` (the reviewers of its organisation, not its author) that it waits."""
    prompt_set = version.prompt_set
    project = prompt_set.project
    author_id = version.created_by_id
    reviewers = (
        get_user_model()
        .objects.filter(
            memberships__organisation=project.organisation, memberships__role__in=_REVIEW_ROLES, is_active=True
        )
        .exclude(pk=getattr(actor, "pk", None))
        .distinct()
    )
    if project.require_four_eyes and author_id is not None:
        reviewers = reviewers.exclude(pk=author_id)
    who = _name(actor)
    text = f"{who} submitted version {version.number} of {project.slug}/{prompt_set.slug} for review"
    link = _link("web:set_review", prompt_set)
    return _notify(
        list(reviewers), version=version, kind=NotificationKind.SUBMITTED, actor=actor, text=text, comment=note,
        subject=f"[Anvil] Review: {project.slug}/{prompt_set.slug} version {version.number}",
        body=f"{text}.\n" + (f"\nTheir note: {note}\n" if note else "") + f"\nReview it here: {link}\n",
    )


def notify_reviewed(*, actor: Actor, version: Any) -> list[Notification]:
    """Tell the author of ``version`` that it was approved or sent back (nobody when they reviewed it themselves).

    The reviewers' "submitted" notifications of the version are marked read: nothing waits for them any more.
    """
    prompt_set = version.prompt_set
    project = prompt_set.project
    author_id = version.created_by_id
    Notification.objects.filter(version=version, kind=NotificationKind.SUBMITTED, read_at__isnull=True).update(
        read_at=timezone.now()
    )
    if author_id is None or author_id == getattr(actor, "pk", None):
        return []
    if not Membership.objects.filter(user_id=author_id, organisation=project.organisation).exists():
        return []  # no longer a member: nothing of this organisation reaches them
    approved = version.state == "approved"
    kind = NotificationKind.APPROVED if approved else NotificationKind.CHANGES_REQUESTED
    what = "approved" if approved else "requested changes on"
    text = f"{_name(actor)} {what} version {version.number} of {project.slug}/{prompt_set.slug}"
    comment = version.review_comment or ""
    link = _link("web:set", prompt_set)
    verdict = "Approved" if approved else "Changes requested"
    return _notify(
        [get_user_model().objects.get(pk=author_id)], version=version, kind=kind, actor=actor, text=text,
        comment=comment,
        subject=f"[Anvil] {verdict}: {project.slug}/{prompt_set.slug} version {version.number}",
        body=f"{text}.\n" + (f"\nTheir comment: {comment}\n" if comment else "") + f"\nOpen the set: {link}\n",
    )


def notifications_mark_read(*, user: Any, ids: list[int] | None = None) -> int:
    """Mark ``user``'s unread notifications read (only ``ids`` when given); returns how many."""
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())


def wait_for_mail(timeout: float = 5.0) -> None:
    """Wait, at most ``timeout`` seconds in all, until every e-mail handed to the mail threads has been tried.

    For tests, and at exit (registered below): a command such as ``anvil-forge demo`` that ends right after a
    review still sends its mail, and a server stopping waits no longer than this.
    """
    deadline = time.monotonic() + timeout
    with _mail_lock:
        threads = list(_mail_threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(wait_for_mail, MAIL_EXIT_WAIT_SECONDS)


def _notify(
    recipients: list[Any], *, version: Any, kind: str, actor: Actor, text: str, comment: str, subject: str, body: str
) -> list[Notification]:
    organisation = version.prompt_set.project.organisation
    made = Notification.objects.bulk_create(
        Notification(
            recipient=user, organisation=organisation, version=version, kind=kind,
            actor=actor if getattr(actor, "pk", None) is not None else None, text=text[:500], comment=comment,
        )
        for user in recipients
    )
    if mail.email_enabled():
        letters = [(user.email, subject, body) for user in recipients if user.email]
        if letters:
            transaction.on_commit(lambda: _send_in_background(letters))
    return made


def _send_in_background(letters: list[tuple[str, str, str]]) -> None:
    thread = threading.Thread(target=_send_all, args=(letters,), name="anvil.notifications.mail", daemon=True)
    with _mail_lock:
        _mail_threads[:] = [t for t in _mail_threads if t.is_alive()]
        _mail_threads.append(thread)
    thread.start()


def _send_all(letters: list[tuple[str, str, str]]) -> None:
    for to, subject, body in letters:
        try:
            mail.send(to=to, subject=subject, body=body)  # logs and returns False when the server fails
        except Exception:  # never let a mail problem escape the thread
            logger.exception("could not send the notification %r to %s", subject, to)


def _link(name: str, prompt_set: Any) -> str:
    project = prompt_set.project
    path = reverse(name, args=[project.organisation.slug, project.slug, prompt_set.slug])
    return settings.ANVIL_PUBLIC_URL + path


def _name(actor: Actor) -> str:
    return actor.get_username() if hasattr(actor, "get_username") else "someone"
