"""Every route of the management API (``/api/v1/manage/``), tried with the API key of every role, of another
organisation's owner, with a read-only key and with no key, in the same world as the page matrix.

* no key: 401 and nothing changes;
* another organisation's owner: 404 everywhere (or an empty list), never a name of ours, nothing changes;
* a read-only key: every write refused (403), nothing changes;
* a member whose role lacks the capability: 403 on the write, nothing changes; reads answer 200.

``MANAGE_API`` must name every route of the API (a test compares it with Django's resolver), and the page
matrix (``test_access_matrix``) counts these routes as covered through it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from anvil_forge.accounts.permissions import ROLE_CAPABILITIES, Capability, SystemActor
from anvil_forge.api.keys import api_key_create
from anvil_forge.distribution.tokens import failure_limiter
from forge.tests.security.test_access_matrix import _route_names, fingerprint, leaked, leaked_in, victim_names

pytestmark = pytest.mark.django_db

VIEW, EDIT, SUBMIT, REVIEW, PUBLISH = (
    Capability.VIEW, Capability.EDIT, Capability.SUBMIT, Capability.REVIEW, Capability.PUBLISH
)
READ_ONLY_OK = "read"  # a POST that changes nothing (running test cases): any member, read-only keys too

ORG = "organisations/{org}"
PROJECT = ORG + "/projects/{project}"
SET = PROJECT + "/sets/core"

# name -> (method, path, capability, body)
MANAGE_API: dict[str, tuple[str, str, Any, dict[str, Any] | None]] = {
    "manage_api:organisations": ("GET", "organisations", VIEW, None),
    "manage_api:organisation": ("GET", ORG, VIEW, None),
    "manage_api:projects": ("GET", ORG + "/projects", VIEW, None),
    "manage_api:instances": ("GET", ORG + "/instances", VIEW, None),
    "manage_api:audit": ("GET", ORG + "/audit", VIEW, None),
    "manage_api:project": ("GET", PROJECT, VIEW, None),
    "manage_api:environments": ("GET", PROJECT + "/environments", VIEW, None),
    "manage_api:releases": ("GET", PROJECT + "/releases", VIEW, None),
    "manage_api:release": ("GET", PROJECT + "/releases/{release_id}", VIEW, None),
    "manage_api:sets": ("POST", PROJECT + "/sets", EDIT, {"slug": "matrix-set"}),
    "manage_api:set": ("GET", SET, VIEW, None),
    "manage_api:prompts": ("POST", SET + "/prompts", EDIT, {"id": "matrix.added", "template": "x"}),
    "manage_api:prompt": ("PATCH", SET + "/prompts/welcome.message", EDIT,
                          {"base_revision": "{prompt_revision}", "template": "Matrix {{ name }}"}),
    "manage_api:submit": ("POST", SET + "/submit", SUBMIT, {}),
    "manage_api:rollback": ("POST", SET + "/rollback", PUBLISH, {"version": 1, "environment": "production"}),
    "manage_api:files": ("POST", SET + "/files", EDIT, {"files": {"matrix.pushed.j2": "pushed\n"}}),
    "manage_api:check": ("POST", SET + "/check", READ_ONLY_OK, {}),
    "manage_api:versions": ("GET", SET + "/versions", VIEW, None),
    "manage_api:version": ("GET", SET + "/versions/1", VIEW, None),
    "manage_api:approve": ("POST", PROJECT + "/sets/review/versions/1/approve", REVIEW, {}),
    "manage_api:request_changes": ("POST", PROJECT + "/sets/review/versions/1/request-changes", REVIEW,
                                   {"comment": "no"}),
    "manage_api:publish": ("POST", SET + "/versions/2/publish", PUBLISH, {"environment": "production"}),
}
# Reads of the routes above whose table entry is a write.
ALSO_READ = {
    "manage_api:sets": PROJECT + "/sets",
    "manage_api:prompts": SET + "/prompts",
    "manage_api:prompt": SET + "/prompts/welcome.message",
    "manage_api:files": SET + "/files",
}
MAY = {200, 201, 400, 409}
ROLES = ["owner", "admin", "editor", "reviewer", "viewer", "outsider", "read-only", "no key"]


def test_the_table_names_every_route_of_the_management_api():
    assert {name for name in _route_names() if name.startswith("manage_api:")} == set(MANAGE_API)


def _key(world: Any, role: str) -> str | None:
    if role == "no key":
        return None
    user = world.outsider if role == "outsider" else world.team.member("owner" if role == "read-only" else role)
    return api_key_create(actor=SystemActor("tests"), user=user, name=role, read_only=role == "read-only").raw


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        filled = value.format(**values)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def _expected(role: str, method: str, capability: Any) -> set[int]:
    if role == "no key":
        return {401}
    if role == "outsider":
        return {404}
    if method == "GET" or capability == READ_ONLY_OK:
        return {200}
    if role == "read-only":
        return {403}
    if Capability(capability) in ROLE_CAPABILITIES[role]:
        return MAY  # not refused: the action itself may still say no (nothing to roll back, say)
    return {403}


def test_every_route_answers_each_key_as_its_capabilities_say_and_refusals_change_nothing(world):
    values = {**world.values}
    names = victim_names(values["org"])
    problems: list[str] = []
    for role in ROLES:
        failure_limiter.reset()
        raw = _key(world, role)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}
        client = Client()
        for name, (method, template, capability, body) in MANAGE_API.items():
            tries = [(method, template, body)]
            if name in ALSO_READ:
                tries.append(("GET", ALSO_READ[name], None))
            for try_method, try_template, try_body in tries:
                path = "/api/v1/manage/" + _fill(try_template, values)
                before = fingerprint()
                failure_limiter.reset()
                try:
                    with transaction.atomic():
                        if try_method == "GET":
                            response = client.get(path, **headers)
                        else:
                            call = getattr(client, try_method.lower())
                            response = call(path, json.dumps(_fill(try_body, values)),
                                            content_type="application/json", **headers)
                        changed = fingerprint() != before
                        raise _Rollback
                except _Rollback:
                    pass
                where = f"{role} {try_method} {path} -> {response.status_code}"
                expected = _expected(role, try_method, capability if try_method != "GET" else VIEW)
                if name == "manage_api:organisations" and role == "outsider":
                    expected = {200}  # their own organisations: none of ours (checked below)
                if response.status_code not in expected:
                    problems.append(f"{where}: expected {sorted(expected)} {response.content[:200]!r}")
                if response.status_code not in (200, 201) and changed:
                    problems.append(f"{where}: refused but changed something")
                if "application/json" not in response.get("Content-Type", ""):
                    problems.append(f"{where}: not JSON")
                if role in ("outsider", "no key"):
                    unseen = [n for n in names if not leaked_in(path, [n])]
                    if found := leaked(response, unseen):
                        problems.append(f"{where}: the answer names {', '.join(found)}")
    failure_limiter.reset()
    assert not problems, "\n".join(problems)


class _Rollback(Exception):
    pass
