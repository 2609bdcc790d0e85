"""Bundles as the FORGE serves them: the JSON Schema in docs/ agrees with load_bundle, the fast and the
model-based builders give the same bytes, the cache, and If-None-Match matching."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from anvil_client._exceptions import BundleError
from anvil_client.bundle import canonical_json, load_bundle, sha256_digest
from anvil_forge.distribution.bundles import (
    bundle_cache,
    bundle_for,
    etag_matches,
    release_event_data,
    release_frame_data,
)
from anvil_forge.distribution.selectors import release_with_related

DOCS = Path(__file__).resolve().parents[3] / "docs"
SCHEMA = json.loads((DOCS / "bundle.schema.json").read_text())


def served_bundle(release) -> dict:
    release = release_with_related(release.pk)
    built = bundle_for(version=release.version, environment=release.environment, release=release)
    return json.loads(built.body)


def redigest(bundle: dict) -> dict:
    """Recompute both digests, so a test changes only what it means to change."""
    if all(isinstance(p, dict) for p in bundle.get("prompts", [])):
        bundle["content_digest"] = sha256_digest(canonical_json({"prompts": bundle["prompts"]}))
    bundle.pop("digest", None)
    bundle["digest"] = sha256_digest(canonical_json(bundle))
    return bundle


def test_a_served_bundle_is_valid_against_the_published_schema_and_load_bundle_accepts_it(live):
    bundle = served_bundle(live.release)

    jsonschema.validate(bundle, SCHEMA, cls=jsonschema.Draft202012Validator)
    loaded = load_bundle(canonical_json(bundle))
    assert loaded.digest == bundle["digest"]
    assert loaded.content_digest == live.release.version.digest


MUTATIONS = {
    "unknown top-level field": lambda b: b.update(extra=1),
    "missing environment": lambda b: b.pop("environment"),
    "slug with capitals": lambda b: b.update(project="Support Bot"),
    "version zero": lambda b: b.update(version=0),
    "version as text": lambda b: b.update(version="2"),
    "unknown approval": lambda b: b.update(approval="rejected"),
    "format of another version": lambda b: b.update(format="anvil.bundle/2"),
    "prompt with an extra field": lambda b: b["prompts"][0].update(colour="red"),
    "prompt id with a capital": lambda b: b["prompts"][0].update(id="Welcome.message"),
    "prompt without template": lambda b: b["prompts"][0].pop("template"),
    "metadata not an object": lambda b: b["prompts"][0].update(metadata=[]),
    "parameter of unknown type": lambda b: b["prompts"][0]["parameters"][0].update(type="date"),
    "parameter default of the wrong type": lambda b: b["prompts"][0]["parameters"][0].update(default=3),
    "parameter name with a dash": lambda b: b["prompts"][0]["parameters"][0].update(name="first-name"),
    "digest not sha256": lambda b: b.update(digest="md5:abc"),
    "prompts not a list": lambda b: b.update(prompts={}),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_schema_and_load_bundle_refuse_the_same_malformed_bundles(live, mutation):
    bundle = copy.deepcopy(served_bundle(live.release))
    MUTATIONS[mutation](bundle)
    if mutation != "digest not sha256":
        redigest(bundle)

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bundle, SCHEMA, cls=jsonschema.Draft202012Validator)
    with pytest.raises(BundleError):
        load_bundle(canonical_json(bundle))


def test_the_example_bundle_in_protocol_md_is_valid_and_its_digests_are_right():
    text = (DOCS / "protocol.md").read_text()
    match = re.search(r"<!-- example-bundle -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/protocol.md shows a full example bundle after <!-- example-bundle -->"
    example = json.loads(match.group(1))
    jsonschema.validate(example, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert load_bundle(match.group(1)).version == example["version"]


def test_the_narrow_delivery_query_gives_the_same_event_bytes_as_the_model_path(live):
    bundle_cache.clear()
    environment_id, release_id, fast = release_frame_data(live.release.pk, inline_limit=65536)
    bundle_cache.clear()
    slow = release_event_data(release_with_related(live.release.pk), inline_limit=65536)

    assert fast == slow
    assert (environment_id, release_id) == (live.release.environment_id, live.release.pk)
    assert load_bundle(json.loads(fast)["bundle"]).version == 1


def test_large_bundles_are_referenced_not_inlined(live):
    _, _, data = release_frame_data(live.release.pk, inline_limit=10)
    event = json.loads(data)
    assert "bundle" not in event
    assert event["bundle_url"].endswith("?version=1")


def test_bundles_are_built_once_and_served_from_the_cache(live, django_assert_num_queries):
    release = release_with_related(live.release.pk)
    first = bundle_for(version=release.version, environment=release.environment, release=release)
    with django_assert_num_queries(0):
        again = bundle_for(version=release.version, environment=release.environment, release=release)
    assert again is first


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abd"', False),
        ("abc", False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match_uses_weak_comparison_over_a_list(header, matches):
    assert etag_matches(header, '"abc"') is matches
