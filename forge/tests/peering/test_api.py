"""The read-only peer API: a peer token sees its own project's approved versions, nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from django.test import Client

from anvil_client.bundle import load_bundle
from anvil_forge.distribution.models import AccessToken
from anvil_forge.distribution.services import token_create, token_revoke
from forge.tests import factories


@dataclass
class Shared:
    team: factories.Team
    token: AccessToken
    raw: str
    v1: object
    v2: object

    @property
    def project(self):
        return self.token.project

    def client(self, raw: str | None = None) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw or self.raw}")

    def base(self) -> str:
        return f"/api/v1/peer/projects/{self.project.organisation.slug}/{self.project.slug}"


@pytest.fixture
def shared(team, project, prompt_set) -> Shared:
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    token, raw = token_create(
        actor=team.admin, project=project, environment=factories.environment(project), kind="peer", name="eu forge"
    )
    return Shared(team=team, token=token, raw=raw, v1=v1, v2=v2)


def test_projects_lists_only_the_tokens_project(shared, other_team):
    factories.make_project(other_team.organisation, actor=other_team.owner)
    factories.make_project(shared.team.organisation, actor=shared.team.owner)
    body = shared.client().get("/api/v1/peer/projects").json()
    assert body["total"] == 1 and body["next_page"] is None
    assert body["items"] == [
        {
            "organisation": shared.project.organisation.slug,
            "organisation_name": shared.project.organisation.name,
            "project": shared.project.slug,
            "name": shared.project.name,
            "description": shared.project.description,
        }
    ]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer anvil_peer_" + "x" * 43, "Basic abc"])
def test_missing_or_wrong_token_is_401_without_a_hint(shared, header):
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/api/v1/peer/projects")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid token"}


def test_live_token_is_not_a_peer_token(shared):
    _, live_raw = token_create(
        actor=shared.team.admin, project=shared.project, environment=shared.token.environment, kind="live", name="w"
    )
    assert shared.client(live_raw).get("/api/v1/peer/projects").status_code == 401


def test_revoked_peer_token_is_refused_at_once(shared):
    assert shared.client().get("/api/v1/peer/projects").status_code == 200
    token_revoke(actor=shared.team.admin, token=shared.token)
    assert shared.client().get("/api/v1/peer/projects").status_code == 401


def test_other_projects_are_404_like_missing_ones(shared, other_team):
    other = factories.make_project(other_team.organisation, actor=other_team.owner)
    factories.make_approved_version(factories.make_prompt_set_with_prompts(other, slug="core"))
    sibling = factories.make_project(shared.team.organisation, actor=shared.team.owner)
    client = shared.client()
    for org, project in ((other.organisation.slug, other.slug), (sibling.organisation.slug, sibling.slug),
                         ("nope", "nothing")):
        response = client.get(f"/api/v1/peer/projects/{org}/{project}/sets")
        assert response.status_code == 404
        assert response.json() == {"error": "not found"}
        assert client.get(f"/api/v1/peer/projects/{org}/{project}/sets/core/versions/1").status_code == 404


def test_sets_lists_only_sets_with_an_approved_version(shared):
    factories.make_prompt_set_with_prompts(shared.project, slug="draft")  # never approved
    body = shared.client().get(shared.base() + "/sets").json()
    assert [s["set"] for s in body["items"]] == [shared.v1.prompt_set.slug]
    assert body["items"][0]["latest_version"] == 2
    assert body["items"][0]["approved_versions"] == 2


def test_versions_are_approved_only_newest_first(shared):
    prompt_set = shared.v1.prompt_set
    factories.make_approved_version(prompt_set)  # v3
    prompt_set.refresh_from_db()
    factories.services.prompt_set_reopen(actor=factories.SYSTEM, prompt_set=prompt_set)
    factories.make_submitted_version(prompt_set)  # v4, in review
    body = shared.client().get(f"{shared.base()}/sets/{prompt_set.slug}/versions").json()
    assert [v["version"] for v in body["items"]] == [3, 2, 1]
    assert body["items"][2]["digest"] == shared.v1.digest
    assert shared.client().get(f"{shared.base()}/sets/{prompt_set.slug}/versions/4").status_code == 404


def test_versions_are_paginated(shared):
    prompt_set = shared.v1.prompt_set
    factories.make_approved_version(prompt_set)  # v3
    url = f"{shared.base()}/sets/{prompt_set.slug}/versions"
    first = shared.client().get(url, {"per_page": 2}).json()
    assert [v["version"] for v in first["items"]] == [3, 2]
    assert (first["page"], first["per_page"], first["total"], first["next_page"]) == (1, 2, 3, 2)
    second = shared.client().get(url, {"per_page": 2, "page": 2}).json()
    assert [v["version"] for v in second["items"]] == [1] and second["next_page"] is None
    beyond = shared.client().get(url, {"per_page": 2, "page": 9}).json()
    assert beyond["items"] == [] and beyond["next_page"] is None


@pytest.mark.parametrize("query, message", [({"per_page": 101}, "at most 100"), ({"page": 0}, "page must"),
                                            ({"page": "x"}, "page must"), ({"per_page": "-1"}, "per_page must")])
def test_bad_pagination_is_400_naming_the_parameter(shared, query, message):
    response = shared.client().get("/api/v1/peer/projects", query)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_version_is_a_verified_bundle_whose_content_digest_is_the_versions(shared):
    prompt_set = shared.v1.prompt_set
    response = shared.client().get(f"{shared.base()}/sets/{prompt_set.slug}/versions/1")
    assert response.status_code == 200
    bundle = load_bundle(response.content)
    assert (bundle.organisation, bundle.project, bundle.set, bundle.version) == (
        shared.project.organisation.slug, shared.project.slug, prompt_set.slug, 1)
    assert bundle.content_digest == shared.v1.digest
    assert bundle.environment == "production" and bundle.approval == "approved"
    assert bundle.published_at is not None  # v1 was published to production
    assert response["ETag"].strip('"') == bundle.digest.removeprefix("sha256:")


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nothing_writes(shared, method):
    response = getattr(shared.client(), method)(shared.base() + "/sets")
    assert response.status_code == 405


def test_token_is_never_logged_on_refusal(shared, caplog):
    caplog.set_level(logging.INFO)
    wrong = shared.raw[:-4] + "abcd"
    shared.client(wrong).get("/api/v1/peer/projects")
    assert wrong not in caplog.text and shared.raw not in caplog.text
    assert "refused peer token anvil_peer_" in caplog.text


def test_repeated_failures_are_slowed_down(shared):
    client = Client(HTTP_AUTHORIZATION="Bearer anvil_peer_" + "x" * 43)
    statuses = [client.get("/api/v1/peer/projects").status_code for _ in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429


def test_answers_match_the_openapi_document(shared):
    import json

    import jsonschema

    document = json.loads(Client().get("/api/v1/openapi.json").content)
    prompt_set = shared.v1.prompt_set
    checks = {
        "/api/v1/peer/projects": "PeerProjectPage",
        "/api/v1/peer/projects/{organisation}/{project}/sets": "PeerSetPage",
        "/api/v1/peer/projects/{organisation}/{project}/sets/{set}/versions": "PeerVersionPage",
    }
    for template, schema in checks.items():
        assert template in document["paths"]
        url = template.format(organisation=shared.project.organisation.slug, project=shared.project.slug,
                              set=prompt_set.slug)
        body = shared.client().get(url).json()
        jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}", "components": document["components"]})
