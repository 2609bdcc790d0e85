"""Every URL of the FORGE, tried by every role, by another organisation's owner and by an anonymous visitor.

Nobody reads or changes what is not theirs:

* anonymous: every page sends to sign-in, every POST changes nothing;
* another organisation's owner: 404 everywhere (never 403, which would say the object exists), also when
  putting our object ids under their own organisation's address, and nothing changes;
* neither a stranger nor an anonymous visitor reads any of our names in an answer (organisation, project,
  set and environment slugs, prompt ids): a 404 that says "No prompt set acme/support-bot/core" leaks as
  surely as a 200;
* a member whose role lacks the capability: 403 on POST and nothing changes; pages they may read answer 200.

The URL table below must name every route the FORGE has (a test compares it with Django's resolver), so a
new page cannot slip in untried. Each role's requests run in savepoints rolled back after each URL, so
every request meets the same world.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from anvil_forge.accounts.models import Invitation, Membership
from anvil_forge.accounts.permissions import ROLE_CAPABILITIES, Capability
from anvil_forge.audit.models import AuditEvent
from anvil_forge.distribution.models import AccessToken, LiveInstance, Release
from anvil_forge.peering.models import Peer, RemoteProjectReference, SetSource
from anvil_forge.prompts import models as prompt_models
from anvil_forge.prompts.models import Environment, Project, Prompt, PromptSet, PromptSetVersion
from forge.tests.security.world import PEER_TOKEN, World

pytestmark = pytest.mark.django_db

VIEW, EDIT, SUBMIT, REVIEW, REOPEN, PUBLISH = (
    Capability.VIEW, Capability.EDIT, Capability.SUBMIT, Capability.REVIEW, Capability.REOPEN, Capability.PUBLISH
)
TOKENS, PEERS = Capability.MANAGE_TOKENS, Capability.MANAGE_PEERS
WEBHOOKS = Capability.MANAGE_WEBHOOKS
MEMBERS, PROJECTS, ENVS = Capability.MANAGE_MEMBERS, Capability.MANAGE_PROJECT, Capability.MANAGE_ENVIRONMENTS
ANY = "any member"  # pages whose answer to a member depends on the object (200, 403 or 405): never 404/500
POST_ONLY = "post only"  # GET answers 405


@dataclass(frozen=True)
class Route:
    name: str  # namespace:name as Django knows it
    path: str  # with {placeholders} filled from the world
    get: Any  # Capability needed to read (200; 403 for the rest), ANY, or POST_ONLY
    post: Any = None  # Capability needed to POST, ANY (read-only POST such as a preview), or None (no POST)
    data: dict[str, str] | None = None
    ids: bool = False  # the path carries object ids: also tried under the outsider's own organisation
    redirect_refusal: bool = False  # refuses a role with a message and a redirect (302) rather than a 403 page


SET = "/o/{org}/p/{project}/s/core/"
PROMPT = SET + "prompts/welcome.message/"
REMOTE = "/forges/{org}/peers/hidden-peer/p/racme/rproject/"
HOOK = "/o/{org}/webhooks/{webhook_id}/"

ROUTES = [
    Route("web:projects", "/o/{org}/", VIEW),
    Route("web:instances", "/o/{org}/instances/", VIEW),
    Route("web:audit", "/o/{org}/audit/", VIEW),
    Route("web:tokens", "/o/{org}/tokens/", VIEW, TOKENS,
          {"target": "{project}/staging", "kind": "live", "name": "matrix"}),
    Route("web:token_revoke", "/o/{org}/tokens/{token_id}/revoke/", TOKENS, TOKENS, {}, ids=True),
    Route("web:members", "/o/{org}/members/", VIEW),
    Route("web:invitation_create", "/o/{org}/members/invite/", POST_ONLY, MEMBERS, {"role": "viewer"}),
    Route("web:invitation_revoke", "/o/{org}/members/invitations/{invitation_id}/revoke/", POST_ONLY, MEMBERS, {},
          ids=True),
    Route("web:member_role", "/o/{org}/members/{membership_id}/role/", POST_ONLY, MEMBERS, {"role": "reviewer"},
          ids=True),
    Route("web:member_remove", "/o/{org}/members/{membership_id}/remove/", MEMBERS, MEMBERS, {}, ids=True),
    Route("web:member_reset_link", "/o/{org}/members/{membership_id}/reset-link/", POST_ONLY, MEMBERS, {}, ids=True),
    Route("web:project_new", "/o/{org}/projects/new/", PROJECTS, PROJECTS, {"slug": "matrix-project"}),
    Route("web:project_settings", "/o/{org}/p/{project}/settings/", PROJECTS, PROJECTS, {"name": "Matrix renamed"}),
    Route("web:environment_add", "/o/{org}/p/{project}/settings/environments/add/", POST_ONLY, ENVS,
          {"slug": "matrix-env"}),
    Route("web:environment_update", "/o/{org}/p/{project}/settings/environments/staging/", POST_ONLY, ENVS,
          {"name": "Matrix staging"}),
    Route("web:environment_remove", "/o/{org}/p/{project}/settings/environments/staging/remove/", POST_ONLY, ENVS,
          {}),
    Route("web:project", "/o/{org}/p/{project}/", VIEW),
    Route("web:prompt_set_add", "/o/{org}/p/{project}/sets/add/", POST_ONLY, EDIT, {"slug": "matrix-set", "name": "M"}),
    Route("web:set", SET, VIEW),
    Route("web:set_settings", SET + "settings/", VIEW, EDIT, {"name": "Matrix core"}),
    Route("web:set_archive", SET + "archive/", POST_ONLY, PROJECTS, {"archived": "1"}),
    Route("web:prompt_add", SET + "add/", POST_ONLY, EDIT, {"key": "matrix.added", "template": "x"}),
    Route("web:set_submit", SET + "submit/", POST_ONLY, SUBMIT, {"base_revision": "{core_revision}"}),
    Route("web:set_review", "/o/{org}/p/{project}/s/review/review/", VIEW, REVIEW,
          {"version": "1", "decision": "approve", "comment": "ok"}),
    Route("web:set_reopen", "/o/{org}/p/{project}/s/locked/reopen/", POST_ONLY, REOPEN, {}),
    Route("web:set_import", SET + "import/", EDIT, EDIT, {"stage": "apply"}),
    Route("web:versions", SET + "versions/", VIEW),
    Route("web:version", SET + "versions/1/", VIEW),
    Route("web:diff", SET + "diff/?a=1&b=2", VIEW),
    Route("web:rollback", SET + "versions/1/rollback/production/", ANY, PUBLISH, {}),
    Route("web:version_download", SET + "versions/1/download/", VIEW),
    Route("web:publish", SET + "versions/2/publish/production/", ANY, PUBLISH, {}),
    Route("web:schedule", SET + "versions/2/schedule/staging/", POST_ONLY, PUBLISH,
          {"at": "{future_at}", "tz_offset": "0"}, redirect_refusal=True),
    Route("web:scheduled_cancel", SET + "scheduled/{scheduled_id}/cancel/", POST_ONLY, PUBLISH, {}, ids=True,
          redirect_refusal=True),
    Route("web:release", SET + "releases/{release_id}/", VIEW, ids=True),
    Route("web:release_acks", SET + "releases/{release_id}/acks/", VIEW, ids=True),
    Route("web:rollout_start", SET + "versions/2/rollout/production/", POST_ONLY, PUBLISH, {"stages": "10:60"},
          redirect_refusal=True),
    Route("web:rollout", SET + "rollouts/{rollout_id}/", VIEW, ids=True),
    Route("web:rollout_settings", "/o/{org}/p/{project}/settings/rollouts/", POST_ONLY, PROJECTS,
          {"stages": "10:60,100", "threshold": "3", "min_renders": "20"}, redirect_refusal=True),
    Route("web:rollout_body", SET + "rollouts/{rollout_id}/body/", VIEW, ids=True),
    Route("web:rollout_action", SET + "rollouts/{rollout_id}/pause/", POST_ONLY, PUBLISH, {"reason": "matrix"},
          ids=True, redirect_refusal=True),
    Route("web:prompt", PROMPT, VIEW, EDIT, {
        "save": "1", "base_revision": "{prompt_revision}", "template": "Matrix {{ name }}",
        "param-0-name": "name", "param-0-type": "string", "param-0-required": "1",
    }),
    Route("web:prompt_check", PROMPT + "check/", POST_ONLY, ANY, {"template": "{{ x }}"}),
    Route("web:prompt_preview", PROMPT + "preview/", POST_ONLY, ANY, {"template": "{{ x }}", "sample-x": "1"}),
    Route("web:prompt_rename", PROMPT + "rename/", POST_ONLY, EDIT,
          {"new_key": "matrix.renamed", "base_revision": "{prompt_revision}"}),
    Route("web:prompt_delete", PROMPT + "delete/", ANY, EDIT, {"base_revision": "{prompt_revision}"}),
    Route("web:prompt_submit", PROMPT + "submit/", POST_ONLY, SUBMIT, {"base_revision": "{core_revision}"}),
    Route("webhooks:webhook_list", "/o/{org}/webhooks/", WEBHOOKS, WEBHOOKS,
          {"name": "matrix-hook", "url": "https://hooks.example.com/m", "events": "token.create"}),
    Route("webhooks:webhook_detail", HOOK, WEBHOOKS, WEBHOOKS,
          {"name": "matrix-hook", "url": "https://hooks.example.com/m", "events": "token.create", "active": "1"},
          ids=True),
    Route("webhooks:webhook_secret", HOOK + "secret/", POST_ONLY, WEBHOOKS, {}, ids=True),
    Route("webhooks:webhook_delete", HOOK + "delete/", POST_ONLY, WEBHOOKS, {}, ids=True),
    Route("webhooks:delivery_resend", HOOK + "deliveries/{delivery_id}/resend/", POST_ONLY, WEBHOOKS, {}, ids=True),
    Route("peering:peer_list_org", "/forges/{org}/", VIEW),
    Route("peering:peer_add", "/forges/{org}/add", POST_ONLY, PEERS,
          {"name": "matrix-peer", "url": "http://127.0.0.1:9", "token": PEER_TOKEN}),
    Route("peering:peer_detail", "/forges/{org}/peers/hidden-peer/", VIEW),
    Route("peering:peer_check", "/forges/{org}/peers/hidden-peer/check", POST_ONLY, ANY, {}),
    Route("peering:peer_token", "/forges/{org}/peers/hidden-peer/token", POST_ONLY, PEERS, {"token": PEER_TOKEN}),
    Route("peering:peer_remove", "/forges/{org}/peers/hidden-peer/remove", POST_ONLY, PEERS, {}),
    Route("peering:remote_project", REMOTE, ANY),
    Route("peering:remote_connect", REMOTE + "connect", POST_ONLY, EDIT, {}, redirect_refusal=True),
    Route("peering:remote_set", REMOTE + "s/core/", ANY),
    Route("peering:remote_version", REMOTE + "s/core/v/1/", ANY),
    Route("peering:remote_copy", REMOTE + "s/core/v/1/copy", POST_ONLY, EDIT, {"project": "{project}"},
          redirect_refusal=True),
    Route("peering:reference_detail", "/forges/{org}/connected/{reference_id}/", VIEW, ids=True),
    Route("peering:reference_disconnect", "/forges/{org}/connected/{reference_id}/disconnect", POST_ONLY, EDIT, {},
          ids=True),
]
# Routes without an organisation in their address, tried separately below.
UNSCOPED = {
    "healthz", "web:home", "web:login", "web:logout", "web:switch_organisation", "peering:peer_list",
    "peering:set_upstream", "peering:set_upstream_diff", "distribution:openapi",
    # administration pages without an organisation: forge/tests/web/test_administration_pages.py
    "web:setup", "web:organisation_new", "web:invite_accept", "web:account", "web:sign_out_everywhere",
    "web:password_reset", "web:password_reset_confirm",
    # one's own API keys: forge/tests/web/test_account_api_keys.py
    "web:api_key_create", "web:api_key_revoke",
    # one's own notifications (only the recipient's, from organisations they are a member of):
    # forge/tests/notifications/test_notifications.py
    "notifications:list", "notifications:read", "notifications:open",
}
TOKEN_APIS = {
    "distribution:live-releases", "distribution:live-bundle", "distribution:live-checkin", "peer_api:projects",
    "peer_api:sets", "peer_api:versions", "peer_api:version",
}
ROLES = ["owner", "admin", "editor", "reviewer", "viewer", "outsider", "anonymous"]


def _route_names(resolver: URLResolver | None = None, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names |= _route_names(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(namespace + entry.name)
    return names


def test_the_matrix_names_every_route_of_the_forge():
    from forge.tests.security.test_manage_api_matrix import MANAGE_API  # tried with each role's API key there

    covered = {route.name for route in ROUTES} | UNSCOPED | TOKEN_APIS | set(MANAGE_API)
    assert _route_names() - covered == set(), "add the new routes to the access matrix"


def fingerprint() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        AuditEvent.objects.count(),
        PromptSet.objects.count(),
        list(Prompt.objects.order_by("pk").values_list("pk", "key", "template", "revision")),
        list(PromptSet.objects.order_by("pk").values_list("pk", "status", "revision")),
        list(PromptSetVersion.objects.order_by("pk").values_list("pk", "state")),
        Release.objects.count(),
        list(AccessToken.objects.order_by("pk").values_list("pk", "revoked_at")),
        list(Peer.objects.order_by("pk").values_list("pk", "name", "token_prefix")),
        RemoteProjectReference.objects.count(),
        LiveInstance.objects.count(),
        list(Membership.objects.order_by("pk").values_list("pk", "role")),
        list(Invitation.objects.order_by("pk").values_list("pk", "revoked_at", "accepted_at")),
        list(prompt_models.Project.objects.order_by("pk").values_list("pk", "name", "require_four_eyes")),
        list(prompt_models.Environment.objects.order_by("pk").values_list("pk", "name", "accepts_review_versions")),
        list(PromptSet.objects.order_by("pk").values_list("pk", "name", "archived_at")),
    )


def victim_names(organisation_slug: str) -> list[str]:
    """What a stranger must never read of the victim: organisation, project, set and environment slugs, prompt ids."""
    projects = Project.objects.filter(organisation__slug=organisation_slug)
    names = {organisation_slug, *projects.values_list("slug", flat=True)}
    names |= set(PromptSet.objects.filter(project__in=projects).values_list("slug", flat=True))
    names |= set(Environment.objects.filter(project__in=projects).values_list("slug", flat=True))
    names |= set(Prompt.objects.filter(prompt_set__project__in=projects).values_list("key", flat=True))
    return sorted(names)


def leaked(response: Any, names: list[str]) -> list[str]:
    """The victim's names found in an answer: its body and headers, not counting ``next=`` on a sign-in redirect
    (which only repeats the address the visitor asked for)."""
    location = response.get("Location", "")
    if "/login/" in location:
        location = urlsplit(location).path
    headers = " ".join(f"{key}: {value}" for key, value in response.items() if key.lower() != "location")
    return leaked_in(" ".join((response.content.decode("utf-8", "replace"), headers, location)), names)


def leaked_in(text: str, names: list[str]) -> list[str]:
    """The ``names`` found in ``text`` as whole names (``org-1`` is not found in ``org-12``)."""
    return [name for name in names if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", text)]


def _client(world: World, role: str) -> Client:
    client = Client()
    if role == "outsider":
        client.force_login(world.outsider)
    elif role != "anonymous":
        client.force_login(world.team.member(role))
    return client


def _fill(template: str, values: dict[str, Any]) -> str:
    return template.format(**values)


def _may(role: str, capability: Any) -> bool:
    return capability == ANY or Capability(capability) in ROLE_CAPABILITIES[role]


def _check(role: str, route: Route, method: str, path: str, response: Any, changed: bool) -> str | None:
    """What is wrong with one answer, or None."""
    status = response.status_code
    where = f"{role} {method} {path} -> {status}"
    if status >= 500:
        return f"{where}: server error"
    rule = route.get if method == "GET" else route.post
    if role == "anonymous":
        if status != 302 or "/login/" not in response.get("Location", ""):
            return f"{where}: not sent to sign in"
        return f"{where}: changed something" if changed else None
    if role == "outsider":
        if status == 405 and ((method == "GET" and rule == POST_ONLY) or (method == "POST" and rule is None)):
            return None  # the method is refused before anything is looked up: says nothing about the object
        if status != 404:
            return f"{where}: another organisation's member must get 404"
        return f"{where}: changed something" if changed else None
    if method == "GET":
        if rule == POST_ONLY:
            return None if status == 405 else f"{where}: expected 405"
        if rule == ANY:
            return None if status in (200, 302, 403, 405) else f"{where}: unexpected"
        expected = 200 if _may(role, rule) else 403
        return None if status == expected else f"{where}: expected {expected}"
    if rule is None:  # a page that takes no POST: whatever it answers, nothing changes
        return f"{where}: a POST to a read-only page changed something" if changed else None
    if _may(role, rule):
        return None if status not in (403, 404) else f"{where}: refused to a role that may"
    if status != 403 and not (route.redirect_refusal and status == 302):
        return f"{where}: expected 403"
    return f"{where}: refused but changed something" if changed else None


def test_every_url_answers_each_role_as_its_capabilities_say_and_refusals_change_nothing(world):
    """One world for all roles (building it is the slow part); every problem is listed, not only the first."""
    problems: list[str] = []
    values = {**world.values, "victim_names": victim_names(world.values["org"])}
    for role in ROLES:
        client = _client(world, role)
        for route in ROUTES:
            paths = [_fill(route.path, values)]
            if role == "outsider" and route.ids:  # our ids under the outsider's own organisation
                paths.append(_fill(route.path, {**values, "org": values["other_org"]}))
            methods = ["GET"] + (["POST"] if route.post is not None or role in ("anonymous", "outsider") else [])
            for path in paths:
                for method in methods:
                    problem = _try(client, role, route, method, path, values)
                    if problem:
                        problems.append(problem)
    assert not problems, "\n".join(problems)


def _try(client: Client, role: str, route: Route, method: str, path: str, values: dict[str, Any]) -> str | None:
    """One request inside a savepoint that is rolled back, so the next one meets the same world."""
    data = {k: _fill(v, values) for k, v in (route.data or {}).items()}
    before = fingerprint()
    try:
        with transaction.atomic():
            response = client.get(path) if method == "GET" else client.post(path, data)
            changed = fingerprint() != before
            raise _Rollback
    except _Rollback:
        pass
    problem = _check(role, route, method, path, response, changed)
    # Repeating a name the visitor typed tells them nothing; any other name of ours does.
    typed = " ".join([path, *data.values()])
    unseen = [name for name in values["victim_names"] if not leaked_in(typed, [name])]
    if not problem and role in ("outsider", "anonymous") and (names := leaked(response, unseen)):
        problem = f"{role} {method} {path} -> {response.status_code}: the answer names {', '.join(names)}"
    return problem


class _Rollback(Exception):
    pass


@pytest.mark.parametrize("role", ["outsider", "anonymous"])
def test_unscoped_pages_leak_nothing_to_strangers(world, role):
    """Addresses without an organisation (a set id, a switch): strangers get 404 (anonymous: sign in) naming nothing,
    for every set of ours, a copied one included, and for ids that do not exist."""
    client = _client(world, role)
    copied = PromptSet.objects.get(project__organisation__slug=world.values["org"], slug="locked")
    SetSource.objects.create(
        prompt_set=copied, peer=Peer.objects.get(name="hidden-peer"), peer_name="hidden-peer",
        peer_url="http://127.0.0.1:9", remote_organisation="racme", remote_project="rproject", remote_set="rset",
        copied_version=1, copied_digest="sha256:" + "0" * 64,
    )
    names = [*victim_names(world.values["org"]), "hidden-peer", "racme", "rproject", "rset"]
    set_ids = [*PromptSet.objects.filter(project__organisation__slug=world.values["org"]).values_list("pk", flat=True)]
    problems = []
    for set_id in [*set_ids, max(set_ids) + 1000]:
        for path in (f"/forges/sets/{set_id}/upstream", f"/forges/sets/{set_id}/upstream/diff"):
            response = client.get(path)
            expected = 404 if role == "outsider" else 302
            if response.status_code != expected or leaked(response, names):
                problems.append(f"{path} -> {response.status_code}, names {leaked(response, names)}")
    response = client.get(f"/switch/?org={world.values['org']}")
    assert response.status_code == (404 if role == "outsider" else 302)
    assert not leaked(response, [name for name in names if name != world.values["org"]])  # the org was typed
    assert not problems, "\n".join(problems)
    missing = max(set_ids) + 1000
    for path in ("/forges/sets/{}/upstream", "/forges/sets/{}/upstream/diff"):  # nor that the id exists
        ours, nobodys = (_unmasked(client.get(path.format(set_id))) for set_id in (set_ids[0], missing))
        assert ours == nobodys.replace(str(missing), str(set_ids[0])), path
    if role == "outsider":
        page = client.get("/forges/").content.decode()
        assert "hidden-peer" not in page and world.values["org"] not in page


def _unmasked(response: Any) -> str:
    """The answer without its per-request CSRF token (masked differently on every page)."""
    body = re.sub(r"[A-Za-z0-9]{64}", "", response.content.decode("utf-8", "replace"))
    return f"{response.status_code} {response.get('Location', '')} {body}"


def test_logout_needs_a_post_and_sign_in_page_is_public(world):
    client = _client(world, "viewer")
    assert Client().get("/login/").status_code == 200
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/o/" + world.values["org"] + "/").status_code == 302  # signed out: sent to sign in
