"""Every error ``anvil_client`` raises, rooted at :class:`AnvilError`.

    AnvilError
    ├── NotReady            no bundle anywhere yet (not connected, no disk cache, no bootstrap file)
    ├── PromptNotFound      the id is not in any followed set (carries close matches)
    │   └── AmbiguousPrompt     the bare id is in two followed sets: address it as ``set:id``
    ├── RenderError
    │   ├── MissingVariables    required parameters were not given (names them)
    │   ├── InvalidVariable     a value has the wrong type for its typed parameter
    │   └── TemplateError       the template failed to parse or render
    │       └── RenderLimitExceeded     a render went past its step, size or time limit
    ├── BundleError         a bundle was refused
    │   ├── BundleFormatError   not JSON, or not the ``anvil.bundle/1`` format
    │   ├── BundleSchemaError   a field is missing or has the wrong shape (names the field)
    │   └── BundleDigestError   the content does not match its digest
    ├── ConfigError         configuration that cannot work (names the option)
    └── SyncError           a manual ``sync()`` could not reach the FORGE or was refused (says why)

Errors from other libraries are translated with ``raise ... from`` so the cause stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence


class AnvilError(Exception):
    """Base class of every error raised by anvil_client."""


class NotReady(AnvilError):
    """No bundle is available yet: nothing from the FORGE, the disk cache or a bootstrap file."""


class PromptNotFound(AnvilError, KeyError):
    """The prompt id is not in any followed set."""

    def __init__(self, prompt_id: str, close_matches: Sequence[str] = ()) -> None:
        self.prompt_id = prompt_id
        self.close_matches = tuple(close_matches)
        hint = f" Did you mean: {', '.join(self.close_matches)}?" if self.close_matches else ""
        super().__init__(f"No prompt with id {prompt_id!r}.{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousPrompt(PromptNotFound):
    """The bare id is in more than one followed set; ``set:id`` names one of them."""

    def __init__(self, prompt_id: str, sets: Sequence[str]) -> None:
        self.sets = tuple(sets)
        AnvilError.__init__(
            self,
            f"Prompt id {prompt_id!r} is in several prompt sets ({', '.join(self.sets)}): "
            f"address it as {', '.join(f'{s}:{prompt_id}' for s in self.sets)}.",
        )
        self.prompt_id = prompt_id
        self.close_matches = tuple(f"{s}:{prompt_id}" for s in self.sets)


class RenderError(AnvilError):
    """A prompt could not be rendered with the given variables."""


class MissingVariables(RenderError):
    """Required parameters were not given."""

    def __init__(self, prompt_id: str, names: Sequence[str]) -> None:
        self.prompt_id = prompt_id
        self.names = tuple(names)
        super().__init__(f"Prompt {prompt_id!r} needs variables that were not given: {', '.join(self.names)}.")


class InvalidVariable(RenderError):
    """A value does not have the type its parameter declares."""

    def __init__(self, prompt_id: str, name: str, expected: str, got: object) -> None:
        self.prompt_id = prompt_id
        self.name = name
        self.expected = expected
        super().__init__(
            f"Prompt {prompt_id!r}: variable {name!r} must be a {expected}, got {type(got).__name__}."
        )


class TemplateError(RenderError):
    """The template failed to parse or to render (sandbox refusals included)."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


class RenderLimitExceeded(TemplateError):
    """A render went past a limit on steps, characters or time (``limit`` names which); nothing was returned.

    Every render is bounded so that no template, however written, can hold the host's thread or memory.
    """

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


class BundleError(AnvilError):
    """A bundle was refused; nothing from it was used."""


class BundleFormatError(BundleError):
    """The bytes are not JSON, or not a bundle in the ``anvil.bundle/1`` format."""


class BundleSchemaError(BundleError):
    """A field of the bundle is missing or malformed. ``path`` names it, e.g. ``prompts[2].id``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"bundle field {path}: {problem}")


class BundleDigestError(BundleError):
    """The bundle's content does not match its digest (corrupted or tampered with)."""


class ConfigError(AnvilError):
    """A configuration value that cannot work."""


class SyncError(AnvilError):
    """A manual sync could not reach the FORGE, or the FORGE refused it."""
