"""anvil_client: prompts from memory, updated by push from an Anvil FORGE."""

from anvil_client._exceptions import (
    AnvilError,
    BundleDigestError,
    BundleError,
    BundleFormatError,
    BundleSchemaError,
    ConfigError,
    InvalidVariable,
    MissingVariables,
    NotReady,
    PromptNotFound,
    RenderError,
    TemplateError,
)

__version__ = "0.1.0"

__all__ = [
    "AnvilError",
    "BundleDigestError",
    "BundleError",
    "BundleFormatError",
    "BundleSchemaError",
    "ConfigError",
    "InvalidVariable",
    "MissingVariables",
    "NotReady",
    "PromptNotFound",
    "RenderError",
    "TemplateError",
    "__version__",
]
