"""load_bundle accepts a valid bundle or refuses with a BundleError, never anything else."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from typing import Any

import pytest
from forge_stub import make_bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from anvil_client import BundleDigestError, BundleError
from anvil_client.bundle import load_bundle

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
PATHS = [
    ("version",), ("set",), ("format",), ("prompts",), ("digest",), ("prompts", 0), ("prompts", 0, "id"),
    ("prompts", 0, "template"), ("prompts", 0, "parameters"), ("prompts", 0, "parameters", 0),
    ("prompts", 0, "parameters", 0, "type"), ("prompts", 0, "parameters", 0, "default"),
    ("prompts", 0, "metadata"), ("approval",), ("published_at",),
]


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(PATHS), value=json_values, as_bytes=st.booleans())
def test_a_mutated_bundle_is_refused_with_a_bundle_error(path: tuple[Any, ...], value: Any, as_bytes: bool) -> None:
    bundle = copy.deepcopy(make_bundle("core", 1))
    _set(bundle, path, value)
    data: Any = json.dumps(bundle).encode() if as_bytes else bundle
    with contextlib.suppress(BundleError):  # accepted is fine too; anything else fails the test
        load_bundle(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_with_a_bundle_error(data: bytes) -> None:
    with pytest.raises(BundleError):
        load_bundle(data)


def test_a_changed_template_breaks_the_digest() -> None:
    bundle = make_bundle("core", 1)
    bundle["prompts"][0]["template"] = "changed"
    with pytest.raises(BundleDigestError):
        load_bundle(bundle)


@settings(max_examples=100, deadline=None)
@given(metadata=st.dictionaries(st.text(max_size=6), json_values, max_size=4), template=st.text(max_size=30))
def test_digests_are_computed_over_canonical_json_exactly(metadata: dict, template: str) -> None:
    from anvil_client.bundle import canonical_json, content_digest, sha256_digest

    prompts = [{"id": "a.b", "template": template, "parameters": [], "metadata": metadata}]
    bundle = make_bundle("core", 1, prompts)
    without = {k: v for k, v in bundle.items() if k != "digest"}
    assert bundle["digest"] == sha256_digest(canonical_json(without))
    assert bundle["content_digest"] == content_digest(bundle["prompts"])
    loaded = load_bundle(json.dumps(bundle, ensure_ascii=True).encode())  # escapes must not matter
    assert loaded.digest == bundle["digest"]


def _stored(bundle: dict[str, Any]) -> bytes:
    from anvil_client.bundle import canonical_json

    return canonical_json(bundle)


def test_a_stored_bundle_loads_by_its_digest_without_serialising_it_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import anvil_client.bundle as bundle_module
    from anvil_client.bundle import load_stored_bundle

    bundle = make_bundle("core", 3, [
        {"id": "a.one", "template": "Hi {{ name }}", "metadata": {"digest": "sha256:" + "0" * 64, "n": [1, 2]}},
        {"id": "b.two", "template": '","digest":"sha256:' + "f" * 64 + '"'},
    ])
    data = _stored(bundle)
    expected = load_bundle(data)

    def must_not_run(value: Any) -> bytes:
        raise AssertionError("the stored bundle was serialised again")

    monkeypatch.setattr(bundle_module, "canonical_json", must_not_run)
    stored = load_stored_bundle(data)
    assert stored == expected
    assert stored.prompts == expected.prompts and stored.digest == bundle["digest"]


def test_a_stored_bundle_that_is_not_whole_gets_the_full_check() -> None:
    from anvil_client.bundle import load_stored_bundle

    data = _stored(make_bundle("core", 3))
    corrupt = data.replace(b"Hello", b"Hellp")
    with pytest.raises(BundleDigestError, match="content_digest does not match"):
        load_stored_bundle(corrupt)
    wrong_digest = re.sub(rb'"digest":"sha256:[0-9a-f]{64}"', b'"digest":"sha256:' + b"0" * 64 + b'"', data, count=1)
    with pytest.raises(BundleDigestError, match="digest does not match the bundle"):
        load_stored_bundle(wrong_digest)
    # Valid but not canonical (indented): accepted by the full check.
    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert load_stored_bundle(pretty) == load_bundle(data)
    for junk in (b"", b"{", b"[]", data[:100]):
        with pytest.raises(BundleError):
            load_stored_bundle(junk)
