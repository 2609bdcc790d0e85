"""The bundle loader under arbitrary input: every input is accepted as a valid bundle or refused with a
:class:`BundleError`, never anything else (no KeyError, TypeError, RecursionError... reaches the caller).

Inputs come in four kinds: raw bytes, text, arbitrary JSON documents, and valid bundles with one field
mutated (with the digests recomputed half of the time, so the schema checks are reached and not only the
digest check). Whatever is accepted must be internally consistent: its digest verifies again.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from anvil_client import BundleError
from anvil_client.bundle import Bundle, build_bundle, canonical_json, content_digest, load_bundle, sha256_digest

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Values that JSON cannot carry but a Mapping handed to load_bundle can.
python_oddities = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(b"bytes"),
    st.just({1, 2}),
    st.just(object()),
    st.just((1, 2)),
    st.just("\ud800"),  # a lone surrogate: not encodable as UTF-8
    st.complex_numbers(allow_nan=False, allow_infinity=False, max_magnitude=10),
)
any_value = st.one_of(json_values, python_oddities)

# Sampled words rather than from_regex: much cheaper to generate, and as good at reaching the checks.
prompt_ids = st.lists(st.sampled_from(["a", "b1", "x_y", "welcome", "message", "errors"]), min_size=1, max_size=3).map(
    ".".join
)
parameters = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["name", "plan", "_x", "count2"]),
            "type": st.sampled_from(["string", "number", "boolean", "list", "object"]),
            "required": st.booleans(),
        }
    ),
    max_size=3,
    unique_by=lambda p: p["name"],
)
prompts = st.lists(
    st.fixed_dictionaries(
        {
            "id": prompt_ids,
            "template": st.text(max_size=40),
            "description": st.text(max_size=10),
            "parameters": parameters,
            "metadata": st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
        }
    ),
    max_size=4,
    unique_by=lambda p: p["id"],
)


@st.composite
def valid_bundles(draw: st.DrawFn) -> dict[str, Any]:
    return build_bundle(
        forge="http://127.0.0.1:8000",
        organisation=draw(st.sampled_from(["acme", "a-1", "x_y"])),
        project="support-bot",
        environment=draw(st.sampled_from(["production", "staging"])),
        set_slug="core",
        version=draw(st.integers(min_value=1, max_value=2**40)),
        approval=draw(st.sampled_from(["approved", "in_review"])),
        prompts=draw(prompts),
        created_at="2026-11-25T10:00:00Z",
        approved_by=draw(st.none() | st.text(max_size=8)),
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _redigest(bundle: dict[str, Any]) -> None:
    """Recompute both digests so that a mutated bundle reaches the schema checks."""
    with contextlib.suppress(Exception):  # prompts no longer serialisable or absent: keep the old digest
        bundle["content_digest"] = content_digest(bundle["prompts"])
    with contextlib.suppress(Exception):
        bundle["digest"] = sha256_digest(canonical_json({k: v for k, v in bundle.items() if k != "digest"}))


@st.composite
def mutated_bundles(draw: st.DrawFn) -> dict[str, Any]:
    bundle = copy.deepcopy(draw(valid_bundles()))
    path = draw(st.sampled_from(_paths(bundle)))
    parent = bundle
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(any_value)
    elif action == "add" and isinstance(parent, list):
        parent.insert(draw(st.integers(0, len(parent))), draw(any_value))
    else:
        parent[last] = draw(any_value)
    if draw(st.booleans()):
        _redigest(bundle)
    return bundle


def assert_accepted_or_bundle_error(data: Any) -> Bundle | None:
    try:
        bundle = load_bundle(data)
    except BundleError as exc:
        assert str(exc), "a refusal must say what is wrong"
        return None
    # Accepted: it must verify again from its own canonical bytes (nothing odd slipped through).
    again = load_bundle(canonical_json(dict(bundle.raw)))
    assert again.digest == bundle.digest
    return bundle


@FUZZ
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe{}")
@example(b"[" * 100_000)
@example(b'{"format": "anvil.bundle/1"}')
def test_any_bytes_are_accepted_or_refused_with_a_bundle_error(data: bytes) -> None:
    assert_accepted_or_bundle_error(data)


@FUZZ
@given(st.text(max_size=300))
@example("NaN")
@example('{"format": "anvil.bundle/1", "version": Infinity}')
@example('"\\ud800"')
def test_any_text_is_accepted_or_refused_with_a_bundle_error(text: str) -> None:
    assert_accepted_or_bundle_error(text)


@FUZZ
@given(json_values)
def test_any_json_document_is_accepted_or_refused_with_a_bundle_error(value: Any) -> None:
    assert_accepted_or_bundle_error(value)
    assert_accepted_or_bundle_error(json.dumps(value))


@FUZZ
@given(mutated_bundles())
def test_a_bundle_with_one_field_changed_is_accepted_or_refused_with_a_bundle_error(bundle: dict[str, Any]) -> None:
    assert_accepted_or_bundle_error(bundle)
    try:
        text = json.dumps(bundle, allow_nan=True)
    except (TypeError, ValueError):
        return  # not representable as JSON text: the Mapping form above is the test
    assert_accepted_or_bundle_error(text)


@settings(FUZZ, max_examples=40)
@given(valid_bundles())
def test_valid_bundles_are_accepted_in_every_form(bundle: dict[str, Any]) -> None:
    for form in (bundle, json.dumps(bundle), canonical_json(bundle)):
        loaded = load_bundle(form)
        assert loaded.digest == bundle["digest"]


def _at_stack_depth(frames: int, call: Any) -> Any:
    """Run ``call`` under ``frames`` extra Python frames (a loader called from deep in a host application)."""
    return call() if frames == 0 else _at_stack_depth(frames - 1, call)


def test_deeply_nested_metadata_is_refused_with_a_bundle_error_at_any_stack_depth() -> None:
    """JSON nesting that json.loads accepts but canonical serialisation cannot handle."""
    base = json.dumps(build_bundle(
        forge="http://f", organisation="acme", project="p", environment="production", set_slug="core",
        version=1, approval="approved", prompts=[{"id": "a", "template": "x"}], created_at="t",
    ))
    for frames in (0, 100, 250, 400):
        for depth in range(400, 1000, 4):
            text = base.replace('"metadata": {}', '"metadata": {"deep": ' + "[" * depth + "]" * depth + "}")
            _at_stack_depth(frames, lambda text=text: assert_accepted_or_bundle_error(text))


def test_a_mapping_with_keys_that_are_not_strings_is_refused_with_a_bundle_error() -> None:
    bundle: dict[Any, Any] = build_bundle(
        forge="http://f", organisation="acme", project="p", environment="production", set_slug="core",
        version=1, approval="approved", prompts=[{"id": "a", "template": "x"}], created_at="t",
    )
    for odd_key in (1, None, ("a",)):
        assert_accepted_or_bundle_error({**bundle, odd_key: "x", "zzz": "y"})
        prompt = {**bundle["prompts"][0], odd_key: "x", "zz": 1}
        assert_accepted_or_bundle_error({**bundle, "prompts": [prompt]})
