"""Organisations and the roles their members hold. Users are Django's own ``auth.User``."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    EDITOR = "editor", "Editor"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"


class Organisation(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation"], name="one_membership_per_user_and_org")
        ]
        ordering = ["organisation__slug", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organisation} as {self.role}"


class Invitation(models.Model):
    """A single-use link that makes whoever follows it a member with ``role``. Only its hash is stored."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices)
    email = models.EmailField(blank=True)
    token_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the secret in the link
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"invitation to {self.organisation} as {self.role}" + (f" for {self.email}" if self.email else "")


class SetupLink(models.Model):
    """The one-time link ``anvil-forge serve`` prints while the FORGE has no user.

    The secret is kept as is (not hashed) so that a restarted ``serve`` prints the same link: it only ever
    works while there is no user at all, and whoever can read this table can write any other.
    """

    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "setup link" + (" (used)" if self.used_at else "")


class ApiKey(models.Model):
    """A personal API key (``anvil_key_...``) for the management API: it acts as its user, with the user's role
    in each organisation, optionally limited to one organisation and to reading. Only its sha256 hash is stored,
    with a readable prefix for lists. Made, used and revoked through ``anvil_forge.api.keys``.

    It lives here, beside the users and memberships it stands for, rather than in the ``api`` app: a key is part
    of an account (shown on ``/account/``, removed with its user), and the ``api`` app stays models-free.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=32)
    key_hash = models.CharField(max_length=64, unique=True)
    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )  # None: every organisation the user is a member of
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"API key {self.prefix}… ({self.name})"


class ApiKeyRead(models.Model):
    """What an API key read: one row per key, resource (the management API path read, after
    ``/api/v1/manage/``) and hour, counting the reads. Written by ``anvil_forge.api.keys.api_key_read_record``
    (the first read of a resource in an hour also writes one ``api_key.read`` audit event); shown per key on
    ``/account/``."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="reads")
    resource = models.CharField(max_length=300)
    hour = models.DateTimeField()  # the hour the reads fell in (its start)
    count = models.PositiveIntegerField(default=1)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "resource", "hour"], name="api_key_read_unique_hour")]
        indexes = [models.Index(fields=["key", "-hour"])]

    def __str__(self) -> str:
        return f"{self.key.prefix} read {self.resource} {self.count} times"
