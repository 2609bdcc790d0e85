"""Peers (other FORGEs this one browses), read-only references to their projects, and copies of their sets."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PeerSource(models.TextChoices):
    INTERFACE = "interface", "Added in the interface"
    CLI = "cli", "Added with anvil-forge peer add"
    SETTINGS = "settings", "From ANVIL_PEERS"


class Peer(models.Model):
    """Another FORGE, reached with a ``peer`` ACCESS_TOKEN it issued.

    An organisation's own peers are added by its owners and admins; peers from the ``ANVIL_PEERS`` setting
    have no organisation and are offered to every organisation. The token is kept only encrypted
    (``token_encrypted``, see ``peering.crypto``), or for settings peers not at all: it is read from the
    environment variable ``token_env`` each time it is used.
    """

    organisation = models.ForeignKey(
        "accounts.Organisation", null=True, blank=True, on_delete=models.CASCADE, related_name="peers"
    )
    name = models.SlugField(max_length=64)
    url = models.URLField(max_length=500)
    source = models.CharField(max_length=16, choices=PeerSource.choices, default=PeerSource.INTERFACE)
    token_encrypted = models.TextField(blank=True)
    token_env = models.CharField(max_length=200, blank=True)
    # The token's readable start ("anvil_peer_Ab12"), for recognising it in the peer's token list.
    token_prefix = models.CharField(max_length=32, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Health, from the last connection test or browse: None until checked.
    reachable = models.BooleanField(null=True, blank=True)
    token_valid = models.BooleanField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="peer_name_unique_in_org"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(organisation__isnull=True), name="settings_peer_name_unique"
            ),
        ]
        ordering = ["name"]

    @property
    def is_from_settings(self) -> bool:
        return self.source == PeerSource.SETTINGS

    @property
    def health(self) -> str:
        """``unknown``, ``ok``, ``unreachable``, ``token_refused`` or ``error`` (it answers, but not as a peer
        FORGE should: garbage, too large, a server error): what the badge shows."""
        if self.last_checked_at is None:
            return "unknown"
        if not self.reachable:
            return "unreachable"
        if self.token_valid is False:
            return "token_refused"
        return "error" if self.last_error else "ok"

    def __str__(self) -> str:
        return self.name


class RemoteProjectReference(models.Model):
    """A peer's project connected as a read-only reference: nothing is copied but a last-seen snapshot."""

    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="+")
    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="references")
    remote_organisation = models.SlugField(max_length=64)
    remote_project = models.SlugField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    # {"project": {...}, "sets": [{"slug", "name", "description", "latest_version", "versions": [...], ...}]}
    snapshot = models.JSONField(default=dict, blank=True)
    snapshot_at = models.DateTimeField(null=True, blank=True)
    last_refresh_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "peer", "remote_organisation", "remote_project"],
                name="one_reference_per_remote_project",
            )
        ]
        ordering = ["peer__name", "remote_organisation", "remote_project"]

    @property
    def is_stale(self) -> bool:
        """The last refresh failed: what is shown is the last copy seen."""
        return bool(self.last_error)

    def __str__(self) -> str:
        return f"{self.peer.name}:{self.remote_organisation}/{self.remote_project}"


class SetSource(models.Model):
    """Where a local prompt set was copied from: one peer's set. Later copies of it add versions to this set."""

    prompt_set = models.OneToOneField("prompts.PromptSet", on_delete=models.CASCADE, related_name="peer_source")
    peer = models.ForeignKey(Peer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text too, so provenance survives the peer being removed.
    peer_name = models.CharField(max_length=64)
    peer_url = models.URLField(max_length=500)
    remote_organisation = models.SlugField(max_length=64)
    remote_project = models.SlugField(max_length=64)
    remote_set = models.SlugField(max_length=64)
    # The last copy taken: the version number on the peer and its content digest.
    copied_version = models.PositiveIntegerField()
    copied_digest = models.CharField(max_length=71)
    # What the peer offered when last asked (for the "newer version on the peer" notice).
    upstream_version = models.PositiveIntegerField(null=True, blank=True)
    upstream_digest = models.CharField(max_length=71, blank=True)
    upstream_checked_at = models.DateTimeField(null=True, blank=True)
    upstream_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["peer_name", "remote_organisation", "remote_project", "remote_set"]

    def provenance(self, *, version: int | None = None, digest: str | None = None) -> dict[str, object]:
        """The provenance record kept on a copied version (``PromptSetVersion.provenance``)."""
        return {
            "peer": self.peer_name,
            "url": self.peer_url,
            "organisation": self.remote_organisation,
            "project": self.remote_project,
            "set": self.remote_set,
            "version": version if version is not None else self.copied_version,
            "digest": digest or self.copied_digest,
        }

    def __str__(self) -> str:
        return f"{self.peer_name}:{self.remote_organisation}/{self.remote_project}/{self.remote_set}"


class PeerCopy(models.Model):
    """One "copy into my project": which remote version became which local content, by whom, when."""

    source = models.ForeignKey(SetSource, on_delete=models.CASCADE, related_name="copies")
    remote_version = models.PositiveIntegerField()
    content_digest = models.CharField(max_length=71)  # the remote version's digest; equals the local content's
    bundle_digest = models.CharField(max_length=71)
    copied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    copied_by_label = models.CharField(max_length=200)
    copied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-copied_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source} v{self.remote_version}"
