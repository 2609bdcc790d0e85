"""What asks for a user's attention: notifications (a set to review, a review of their version) and the place
each user last worked in each organisation (where signing in lands)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class NotificationKind(models.TextChoices):
    SUBMITTED = "submitted", "Submitted for review"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Notification(models.Model):
    """One message to one user about one version: shown in the FORGE until read, mailed when e-mail is on."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.CharField(max_length=500)
    comment = models.TextField(blank=True)  # the reviewer's comment, or the author's note to reviewers
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_unread")]

    def __str__(self) -> str:
        return f"to {self.recipient}: {self.text}"


class LastVisit(models.Model):
    """The project and prompt set a user last opened in an organisation (one row per user and organisation)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("prompts.Project", on_delete=models.CASCADE, related_name="+")
    prompt_set = models.ForeignKey(
        "prompts.PromptSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    visited_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="one_last_visit_per_user_and_org")]
        ordering = ["-visited_at"]

    def __str__(self) -> str:
        return f"{self.user} last in {self.prompt_set or self.project}"
