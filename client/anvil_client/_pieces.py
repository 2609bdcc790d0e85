"""What both renderers share, the fast one (:mod:`anvil_client._render`) and Jinja2's (:mod:`anvil_client.templates`).

A leaf module: it imports no other part of the client, so the two renderers and the render limits
(:mod:`anvil_client._limits`) depend on it and never on each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass


def merge_text(pieces: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``("text", ...)``/``("var", name)`` pieces with neighbouring texts joined into one."""
    merged: list[tuple[str, str]] = []
    for kind, value in pieces:
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + value)
        else:
            merged.append((kind, value))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """Bounds on one render of one template (what counts: :mod:`anvil_client._limits`).

    A client takes its limits from :class:`~anvil_client.Config` (``render_max_steps``, ``render_max_chars``,
    ``render_max_seconds``); substitution-only templates, rendered without Jinja2, need none.
    """

    max_steps: int = 100_000
    max_chars: int = 20_000_000
    max_seconds: float = 2.0
    max_int_bits: int = 65_536


DEFAULT_LIMITS = RenderLimits()
