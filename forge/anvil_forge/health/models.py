"""Counters of what the instances report per release: renders, errors by kind, fallbacks, guarded renders,
outcomes. Written only by :func:`anvil_forge.health.services.release_signals_record` (the check-in batch writer)."""

from __future__ import annotations

from django.db import models

# Counts are summed into one row per release, instance and minute, so "since the stage started" can be asked.
BUCKET_SECONDS = 60


class ReleaseSignal(models.Model):
    """What one instance's processes reported of one release during one minute (``bucket``), summed."""

    release = models.ForeignKey("distribution.Release", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey("distribution.LiveInstance", on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()  # the start of the minute the check-ins arrived in
    renders = models.BigIntegerField(default=0)
    missing_variables = models.BigIntegerField(default=0)
    invalid_variable = models.BigIntegerField(default=0)
    template_error = models.BigIntegerField(default=0)
    render_limit = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    guarded = models.BigIntegerField(default=0)
    outcomes_ok = models.BigIntegerField(default=0)
    outcomes_failed = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["release", "instance", "bucket"], name="release_signal_unique_minute")
        ]
        indexes = [models.Index(fields=["release", "bucket"])]

    def __str__(self) -> str:
        return f"signals of release {self.release_id} from instance {self.instance_id} at {self.bucket:%H:%M}"

    @property
    def errors(self) -> int:
        return self.missing_variables + self.invalid_variable + self.template_error + self.render_limit


class ReleaseProblem(models.Model):
    """One kind of failure an instance reported for a release, with how often: a render error of a prompt
    (``kind`` is the error kind, ``detail`` the missing variables, the invalid one, the limit or the message;
    ``guarded`` of them served the previous version's text) or a failed outcome (``kind`` "outcome", ``detail``
    the host's kind, ``prompt`` empty). At most :data:`MAX_PROBLEMS_PER_INSTANCE` rows per release and instance."""

    release = models.ForeignKey("distribution.Release", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey("distribution.LiveInstance", on_delete=models.CASCADE, related_name="+")
    prompt = models.CharField(max_length=265, blank=True)
    kind = models.CharField(max_length=32)
    detail = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField(default=0)
    guarded = models.BigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["release", "instance", "prompt", "kind", "detail"], name="release_problem_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.prompt} {self.detail}"


MAX_PROBLEMS_PER_INSTANCE = 50
