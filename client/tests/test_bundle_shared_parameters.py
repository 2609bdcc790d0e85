"""load_bundle checks each prompt's parameters even when many prompts declare the same ones.

The schema check builds one ``Parameter`` per distinct declaration of a bundle and reuses it; these tests
would fail if a declaration seen before hid a problem in a later prompt, or if declarations that only
compare equal (1, 1.0 and True) were taken for one another.
"""

from __future__ import annotations

from typing import Any

import pytest

from anvil_client import BundleSchemaError
from anvil_client.bundle import build_bundle, canonical_json, load_bundle


def _bundle(prompts: list[dict[str, Any]]) -> bytes:
    return canonical_json(
        build_bundle(
            forge="http://forge.test",
            organisation="acme",
            project="bot",
            environment="production",
            set_slug="core",
            version=1,
            approval="approved",
            prompts=prompts,
            created_at="2026-01-01T00:00:00Z",
        )
    )


def _prompt(index: int, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": f"p{index:03d}.message", "template": "Hello {{ name }}", "parameters": parameters}


NAME = {"name": "name", "type": "string", "required": True}


def test_a_parameter_declared_twice_in_a_later_prompt_is_refused_though_each_was_seen_before() -> None:
    prompts = [_prompt(i, [NAME]) for i in range(5)] + [_prompt(5, [NAME, NAME])]
    with pytest.raises(BundleSchemaError) as error:
        load_bundle(_bundle(prompts))
    assert "prompts[5].parameters[1].name" in str(error.value)
    assert "declared twice" in str(error.value)


def test_a_bad_default_in_a_later_prompt_is_refused_after_valid_declarations_of_the_same_name() -> None:
    prompts = [_prompt(i, [dict(NAME, default="Ada")]) for i in range(5)]
    prompts.append(_prompt(5, [dict(NAME, default=3)]))
    with pytest.raises(BundleSchemaError) as error:
        load_bundle(_bundle(prompts))
    assert "prompts[5].parameters[0].default" in str(error.value)


@pytest.mark.parametrize("default", [1, 1.0, True, -0.0, 0.0])
def test_defaults_that_only_compare_equal_keep_their_own_type_and_sign(default: Any) -> None:
    kinds = {bool: "boolean"}
    declared = {"name": "n", "type": kinds.get(type(default), "number"), "default": default}
    others = [{"name": "n", "type": "number", "default": 1}, {"name": "n", "type": "boolean", "default": True}]
    prompts = [_prompt(0, [others[0]]), _prompt(1, [others[1]]), _prompt(2, [declared])]
    loaded = load_bundle(_bundle(prompts))
    parameter = loaded.prompts[2].parameters[0]
    assert type(parameter.default) is type(default)
    assert repr(parameter.default) == repr(default)


def test_prompts_sharing_declarations_load_the_same_as_each_declared_alone() -> None:
    shared = [dict(NAME), {"name": "plan", "type": "string", "default": "free", "description": "the plan"}]
    prompts = [_prompt(i, [dict(p) for p in shared]) for i in range(3)]
    loaded = load_bundle(_bundle(prompts))
    alone = [load_bundle(_bundle([prompt])).prompts[0] for prompt in prompts]
    assert [spec.parameters for spec in loaded.prompts] == [spec.parameters for spec in alone]
    assert loaded.prompts[1].parameters[1].description == "the plan"
