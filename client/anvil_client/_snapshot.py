"""The immutable in-memory snapshot the hot path reads.

A snapshot maps every prompt id to a compiled prompt. It is built completely, then published by one
attribute assignment, so a reader sees all of a version or none of it. Prompts of a set are compiled once
per bundle digest and reused by later snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anvil_client._pieces import DEFAULT_LIMITS, RenderLimits
from anvil_client._render import CompiledPrompt

SOURCES = ("bootstrap", "disk", "forge")


@dataclass(frozen=True, slots=True)
class SetEntry:
    bundle: Any  # anvil_client.bundle.Bundle
    source: str
    prompts: Mapping[str, CompiledPrompt]


@dataclass(frozen=True, slots=True)
class Snapshot:
    sets: Mapping[str, SetEntry] = field(default_factory=dict)
    # Bare ids (when unique) and ``set:id`` for every prompt.
    prompts: dict[str, CompiledPrompt] = field(default_factory=dict)
    # Bare ids found in more than one set, with the sets.
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The client's render limits, given to every prompt compiled into this snapshot and its successors.
    limits: RenderLimits = DEFAULT_LIMITS

    @property
    def versions(self) -> dict[str, int]:
        return {name: entry.bundle.version for name, entry in sorted(self.sets.items())}

    @property
    def source(self) -> str | None:
        """The least fresh source among the sets: ``forge`` only when every set was confirmed by the FORGE."""
        if not self.sets:
            return None
        return min((entry.source for entry in self.sets.values()), key=SOURCES.index)

    def with_set(self, bundle: Any, source: str, *, check: bool = False) -> Snapshot:
        """A snapshot with ``bundle`` as its set's version.

        ``check`` compiles, now, every prompt whose template or parameters changed from the version in
        this snapshot, so a release with a template that cannot compile is refused (BundleError) and the
        last good version kept; the others compile on first use.
        """
        entry = self.sets.get(bundle.set)
        if entry is not None and entry.bundle.digest == bundle.digest:
            compiled = entry.prompts
        else:
            compiled = compile_bundle(
                bundle, previous=entry.prompts if entry else None, check=check, limits=self.limits
            )
        sets = dict(self.sets)
        sets[bundle.set] = SetEntry(bundle=bundle, source=source, prompts=compiled)
        return build(sets, self.limits)

    def with_source(self, set_slug: str, source: str) -> Snapshot:
        entry = self.sets[set_slug]
        sets = dict(self.sets)
        sets[set_slug] = SetEntry(bundle=entry.bundle, source=source, prompts=entry.prompts)
        return Snapshot(sets=sets, prompts=self.prompts, ambiguous=self.ambiguous, limits=self.limits)


def compile_bundle(
    bundle: Any,
    *,
    previous: Mapping[str, CompiledPrompt] | None = None,
    check: bool = False,
    limits: RenderLimits = DEFAULT_LIMITS,
) -> dict[str, CompiledPrompt]:
    """The prompts of a verified bundle, sharing compiled templates with ``previous`` where unchanged.

    With ``check`` and a previous version, new or changed templates are compiled now and one that fails
    fails the whole bundle, so the previous version stays.
    """
    from anvil_client._exceptions import BundleError, TemplateError

    compiled = {}
    for spec in bundle.prompts:
        old = previous.get(spec.id) if previous is not None else None
        same = old is not None and old.same_template(spec)
        prompt = CompiledPrompt(
            spec, set_slug=bundle.set, version=bundle.version, share=old if same else None, limits=limits,
            digest=bundle.content_digest,
        )
        if check and previous is not None and not same:  # with no previous version there is nothing to keep
            try:
                prompt.compile()
            except (TemplateError, RecursionError, MemoryError, ValueError, SyntaxError) as exc:
                raise BundleError(
                    f"set {bundle.set!r} version {bundle.version}: prompt {spec.id!r} does not compile: {exc}"
                ) from exc
        compiled[spec.id] = prompt
    return compiled


def build(sets: Mapping[str, SetEntry], limits: RenderLimits = DEFAULT_LIMITS) -> Snapshot:
    prompts: dict[str, CompiledPrompt] = {}
    owners: dict[str, list[str]] = {}
    for set_slug in sorted(sets):
        for prompt_id, compiled in sets[set_slug].prompts.items():
            prompts[f"{set_slug}:{prompt_id}"] = compiled
            owners.setdefault(prompt_id, []).append(set_slug)
    ambiguous = {pid: tuple(names) for pid, names in owners.items() if len(names) > 1}
    for prompt_id, names in owners.items():
        if len(names) == 1:
            prompts[prompt_id] = sets[names[0]].prompts[prompt_id]
    return Snapshot(sets=dict(sets), prompts=prompts, ambiguous=ambiguous, limits=limits)
