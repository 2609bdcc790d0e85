"""Small presentation helpers for the FORGE's templates."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """'just now', '3 minutes ago', '2 days, 4 hours ago' (empty for no moment)."""
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment)} ago"


@register.filter
def check_label(check: dict) -> str:
    """A test case's check in words: 'contains 'Ada'', 'at most 200 characters', 'is valid JSON'..."""
    from anvil_forge.prompts.samples import check_label as label

    return label(check)
