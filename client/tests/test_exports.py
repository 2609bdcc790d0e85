from __future__ import annotations

import anvil_client


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert anvil_client.__all__ == sorted(anvil_client.__all__)
    for name in anvil_client.__all__:
        assert getattr(anvil_client, name) is not None, name


def test_public_api_is_exactly_the_documented_names() -> None:
    assert set(anvil_client.__all__) == {
        "AmbiguousPrompt", "AnvilError", "BundleDigestError", "BundleError", "BundleFormatError",
        "BundleSchemaError", "Client", "Config", "ConfigError", "HostState", "InvalidVariable",
        "MissingVariables", "NotReady", "PromptNotFound", "RenderError", "RenderLimitExceeded", "SyncError",
        "TemplateError",
        "__version__", "configure", "default_client", "get", "ids", "last_prompt", "on_update", "prompt",
        "read_bootstrap", "read_host_state", "report", "status", "template", "write_bootstrap", "write_host_state",
    }


def test_errors_are_rooted_at_anvil_error() -> None:
    for name in anvil_client.__all__:
        value = getattr(anvil_client, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, anvil_client.AnvilError), name
