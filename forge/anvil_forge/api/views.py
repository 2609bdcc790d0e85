"""``/api/v1/manage/...``: the management API, used with a personal API key (``Authorization: Bearer anvil_key_...``).

Each endpoint only authorises, parses, calls the selectors and services the web pages call, and answers JSON, so
no rule lives twice: the key acts as its user, with the user's role in each organisation (four eyes included: a
key cannot approve its own user's submission). On top of that, once for all endpoints (:func:`_dispatch`):

* a missing, malformed, unknown, revoked or expired key, or one of an inactive user: 401, the same answer for each,
  and failed attempts count towards the per-address limit (429) shared with the token APIs;
* a read-only key is refused (403) on every endpoint that writes;
* a key limited to one organisation finds no other (404, as for what does not exist);
* errors are ``{"error": message}`` (with ``"details"`` when there are any) and the service's status;
* a successful read is recorded for its key (``keys.api_key_read_record``: a counter per key, path and hour, and
  one ``api_key.read`` audit event per key, path and hour).

Lists are paginated: ``?page=N&per_page=M`` (1 to 100, default 50) answer ``{"items", "page", "per_page",
"total", "next_page"}``. The paths and bodies are documented in ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from anvil_client.bundle import content_digest, normalise_prompt
from anvil_forge.accounts.models import ApiKey
from anvil_forge.accounts.permissions import role_of
from anvil_forge.api import selectors as api_selectors
from anvil_forge.api.keys import api_key_authenticate, api_key_read_record
from anvil_forge.audit.selectors import audit_events_for
from anvil_forge.audit.services import audit_api_key
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound
from anvil_forge.distribution import selectors as distribution_selectors
from anvil_forge.distribution.tokens import bearer_token, failure_limiter, loggable_prefix
from anvil_forge.prompts import fileformat, selectors, services, transfer
from anvil_forge.prompts.models import PromptSet, PromptSetVersion, SetStatus
from anvil_forge.prompts.rollback import approval_of, rollback_environment
from anvil_forge.prompts.samples import failing_samples, results_for

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50
MAX_BODY_BYTES = 1024 * 1024
MAX_FILES_BODY_BYTES = 2 * fileformat.MAX_UPLOAD_BYTES  # prompt files as JSON strings: escaping may double them
READ, WRITE = "read", "write"
MANAGE_PREFIX = "/api/v1/manage/"

Handler = Callable[..., Any]


@dataclass
class Call:
    """One authenticated request: who acts (the key's user), with which key, and the parsed JSON body."""

    request: HttpRequest
    key: ApiKey
    body: dict[str, Any]

    @property
    def actor(self) -> Any:
        return self.key.user

    def query(self, name: str) -> str | None:
        value = self.request.GET.get(name)
        return value if value not in (None, "") else None


def _error(message: str, status: int, details: Mapping[str, Any] | None = None, **headers: str) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = dict(details)
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def endpoint(**methods: tuple[Handler, str]) -> Callable[..., HttpResponse]:
    """A view answering the given methods: ``GET=(handler, READ), POST=(handler, WRITE)``."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return _dispatch(request, methods, kwargs)

    view.manage_methods = methods  # type: ignore[attr-defined]
    return view


def _dispatch(request: HttpRequest, methods: Mapping[str, tuple[Handler, str]], kwargs: dict[str, Any]) -> HttpResponse:
    method = "GET" if request.method == "HEAD" else (request.method or "GET")
    if method not in methods:
        return _error(f"method {request.method} not allowed here", 405, Allow=", ".join(sorted(methods)))
    handler, kind = methods[method]
    address = request.META.get("REMOTE_ADDR", "")
    wait = failure_limiter.retry_after(address)
    if wait:
        return _error("too many failed attempts; try again later", 429, Retry_After=str(wait))
    raw = bearer_token(request.headers.get("Authorization"))
    key = api_key_authenticate(raw)
    if key is None:
        failure_limiter.record_failure(address)
        _logger().warning("refused API key %s from %s on %s", loggable_prefix(raw or ""), address, request.path)
        return _error("invalid API key", 401, WWW_Authenticate='Bearer realm="anvil"')
    if kind == WRITE and key.read_only:
        return _error("this API key is read-only", 403)
    organisation = kwargs.get("organisation")
    if organisation is not None and key.organisation_id is not None and key.organisation.slug != organisation:
        return _error(f"No organisation {organisation} was found.", 404)
    try:
        body = _body(request, limit=MAX_FILES_BODY_BYTES if kwargs.pop("_files", False) else MAX_BODY_BYTES)
        with audit_api_key(key.prefix):  # every change it makes says which key made it
            result = handler(Call(request=request, key=key, body=body), **kwargs)
    except ApplicationError as exc:
        return _error(exc.message, exc.status_code, exc.extra)
    if kind == READ and (not isinstance(result, HttpResponse) or result.status_code < 300):
        api_key_read_record(
            key=key, resource=request.path.split(MANAGE_PREFIX, 1)[-1],
            organisation=organisation, project=kwargs.get("project"),
        )
    if isinstance(result, HttpResponse):
        return result
    return JsonResponse(result, status=201 if method == "POST" and kind == WRITE and _created(handler) else 200)


def _created(handler: Handler) -> bool:
    return getattr(handler, "creates", False)


def creates(handler: Handler) -> Handler:
    """Mark a POST handler whose success is 201 Created."""
    handler.creates = True  # type: ignore[attr-defined]
    return handler


def _logger() -> Any:
    import logging

    return logging.getLogger("anvil_forge.api")


def _body(request: HttpRequest, *, limit: int) -> dict[str, Any]:
    if request.method in ("GET", "HEAD"):
        return {}
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > limit:
        raise ApplicationError(f"the request body is larger than {limit // 1024} KB", {"limit": limit}) from None
    data = request.read(limit + 1)
    if len(data) > limit:
        raise ApplicationError(f"the request body is larger than {limit // 1024} KB", {"limit": limit})
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApplicationError("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise ApplicationError("the request body must be a JSON object")
    return value


# Parsing ------------------------------------------------------------------------------------------------------


def _text(body: Mapping[str, Any], name: str, *, required: bool = False, default: str | None = None) -> Any:
    value = body.get(name, default)
    if value is None:
        if required:
            raise ApplicationError(f"{name} is required", {"field": name})
        return None
    if not isinstance(value, str):
        raise ApplicationError(f"{name} must be text", {"field": name})
    return value


def _boolean(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApplicationError(f"{name} must be true or false", {"field": name})
    return value


def _whole(value: Any, name: str, *, required: bool = False) -> int | None:
    if value is None:
        if required:
            raise ApplicationError(f"{name} is required", {"field": name})
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        raise ApplicationError(f"{name} must be a whole number", {"field": name})
    return value


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ApplicationError(f"{name} must be an ISO 8601 date and time with its offset", {"field": name})
    return parsed


def _page(call: Call, items: Any, describe: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    page_number = _whole(call.query("page") or "1", "page") or 0
    per_page = _whole(call.query("per_page") or str(DEFAULT_PER_PAGE), "per_page") or 0
    if page_number < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise ApplicationError(f"page must be 1 or more and per_page 1 to {MAX_PER_PAGE}")
    paginator = Paginator(items, per_page)
    pages = max(1, paginator.num_pages)
    rows = list(paginator.page(page_number).object_list) if page_number <= pages and paginator.count else []
    return {
        "items": [describe(row) for row in rows],
        "page": page_number,
        "per_page": per_page,
        "total": paginator.count,
        "next_page": page_number + 1 if page_number < pages else None,
    }


# Describing ---------------------------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _name(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def _describe_project(project: Any) -> dict[str, Any]:
    return {
        "organisation": project.organisation.slug,
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "require_four_eyes": project.require_four_eyes,
        "created_at": _when(project.created_at),
    }


def _describe_environment(environment: Any) -> dict[str, Any]:
    return {
        "slug": environment.slug,
        "name": environment.name,
        "is_production": environment.is_production,
        "accepts_review_versions": environment.accepts_review_versions,
    }


def _describe_set(prompt_set: PromptSet) -> dict[str, Any]:
    return {
        "slug": prompt_set.slug,
        "name": prompt_set.name,
        "description": prompt_set.description,
        "status": prompt_set.status,
        "revision": prompt_set.revision,
        "archived": prompt_set.archived_at is not None,
        "updated_at": _when(prompt_set.updated_at),
        "updated_by": _name(prompt_set.updated_by),
    }


def _describe_prompt(prompt: Any) -> dict[str, Any]:
    return {
        "id": prompt.key,
        "template": prompt.template,
        "description": prompt.description,
        "parameters": prompt.parameters,
        "metadata": prompt.metadata,
        "tests": prompt.tests,
        "revision": prompt.revision,
        "updated_at": _when(prompt.updated_at),
        "updated_by": _name(prompt.updated_by),
    }


def _describe_version(version: PromptSetVersion, *, full: bool = False) -> dict[str, Any]:
    approval = approval_of(version)
    out: dict[str, Any] = {
        "number": version.number,
        "state": version.state,
        "digest": version.digest,
        "created_at": _when(version.created_at),
        "created_by": _name(version.created_by),
        "reviewed_at": _when(version.reviewed_at),
        "reviewed_by": _name(version.reviewed_by),
        "review_comment": version.review_comment,
        "rollback_of": version.rollback_of.number if version.rollback_of_id and version.rollback_of else None,
        "approved_by": _name(approval.reviewed_by) if approval else None,
        "failing_tests": failing_samples(version.snapshot.get("test_results")),
    }
    if full:
        out["prompts"] = version.snapshot.get("prompts", [])
        out["tests"] = version.snapshot.get("tests", {})
        out["test_results"] = version.snapshot.get("test_results")
    return out


def _describe_release(release: Any) -> dict[str, Any]:
    return {
        "id": release.pk,
        "environment": release.environment.slug,
        "set": release.prompt_set.slug,
        "version": release.version.number,
        "digest": release.version.digest,
        "published_at": _when(release.published_at),
        "published_by": _name(release.published_by),
    }


def _describe_acknowledgement(event: Any) -> dict[str, Any]:
    data = event.data or {}
    return {
        "instance": data.get("instance", ""),
        "instance_id": data.get("instance_id", ""),
        "host": data.get("host", ""),
        "acknowledged_at": _when(event.created_at),
    }


def _describe_instance(state: Any) -> dict[str, Any]:
    instance = state.instance
    return {
        "instance_id": instance.instance_id,
        "name": instance.name,
        "host": instance.host,
        "project": instance.project.slug,
        "environment": instance.environment.slug,
        "online": not state.offline,
        "processes": len(state.processes),
        "modes": state.modes,
        "client_versions": state.client_versions,
        "versions": {mix.slug: mix.numbers[0][0] for mix in state.versions if mix.numbers},
        "pins": {mix.slug: mix.numbers[0][0] for mix in state.pins if mix.numbers},
        "first_seen_at": _when(instance.first_seen_at),
        "last_seen_at": _when(state.last_seen_at),
    }


def _describe_event(event: Any) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": _when(event.created_at),
        "actor": event.actor_label,
        "action": event.action,
        "organisation": event.organisation.slug if event.organisation_id else None,
        "project": event.project.slug if event.project_id else None,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object": event.object_repr,
        "data": event.data,
    }


# Looking up ---------------------------------------------------------------------------------------------------


def _project(call: Call, organisation: str, project: str) -> Any:
    return selectors.project_get(actor=call.actor, organisation_slug=organisation, project_slug=project)


def _set(call: Call, organisation: str, project: str, set_slug: str) -> PromptSet:
    return selectors.prompt_set_get(actor=call.actor, project=_project(call, organisation, project), slug=set_slug)


def _version(call: Call, organisation: str, project: str, set_slug: str, number: int) -> PromptSetVersion:
    prompt_set = _set(call, organisation, project, set_slug)
    return selectors.version_get(actor=call.actor, prompt_set=prompt_set, number=number)


# Organisations, projects, environments ---------------------------------------------------------------------------


def organisations(call: Call) -> dict[str, Any]:
    found = selectors.organisations_for(call.actor)
    if call.key.organisation_id is not None:
        found = found.filter(pk=call.key.organisation_id)
    return _page(call, found, lambda org: {"slug": org.slug, "name": org.name, "role": role_of(call.actor, org)})


def organisation(call: Call, organisation: str) -> dict[str, Any]:
    found = selectors.organisation_get(actor=call.actor, slug=organisation)
    return {"slug": found.slug, "name": found.name, "role": role_of(call.actor, found)}


def projects(call: Call, organisation: str) -> dict[str, Any]:
    found = selectors.organisation_get(actor=call.actor, slug=organisation)
    return _page(call, selectors.projects_for(actor=call.actor, organisation=found), _describe_project)


def project(call: Call, organisation: str, project: str) -> dict[str, Any]:
    return _describe_project(_project(call, organisation, project))


def environments(call: Call, organisation: str, project: str) -> dict[str, Any]:
    found = _project(call, organisation, project)
    return _page(call, selectors.environments_for(actor=call.actor, project=found), _describe_environment)


# Prompt sets and prompts ----------------------------------------------------------------------------------------


def sets(call: Call, organisation: str, project: str) -> dict[str, Any]:
    found = _project(call, organisation, project)
    archived = call.query("archived") in ("1", "true")
    return _page(call, selectors.prompt_sets_for(actor=call.actor, project=found, archived=archived), _describe_set)


@creates
def set_create(call: Call, organisation: str, project: str) -> dict[str, Any]:
    found = _project(call, organisation, project)
    made = services.prompt_set_create(
        actor=call.actor,
        project=found,
        slug=_text(call.body, "slug", required=True),
        name=_text(call.body, "name", default="") or "",
        description=_text(call.body, "description", default="") or "",
    )
    return _describe_set(made)


def set_detail(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    releases = [r for r in selectors.current_releases(prompt_set.project) if r.prompt_set_id == prompt_set.pk]
    return {
        **_describe_set(prompt_set),
        "prompts": list(selectors.prompts_for(actor=call.actor, prompt_set=prompt_set).values_list("key", flat=True)),
        "live": {release.environment.slug: release.version.number for release in releases},
    }


def prompts(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    search = call.query("search") or ""
    return _page(call, selectors.prompts_for(actor=call.actor, prompt_set=prompt_set, search=search), _describe_prompt)


@creates
def prompt_create(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    made = services.prompt_create(
        actor=call.actor,
        prompt_set=prompt_set,
        key=_text(call.body, "id", required=True),
        template=_text(call.body, "template", required=True),
        description=_text(call.body, "description", default="") or "",
        parameters=call.body.get("parameters"),
        metadata=call.body.get("metadata"),
        tests=call.body.get("tests"),
    )
    return _describe_prompt(made)


def prompt(call: Call, organisation: str, project: str, set_slug: str, key: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    return _describe_prompt(selectors.prompt_get(actor=call.actor, prompt_set=prompt_set, key=key))


def prompt_update(call: Call, organisation: str, project: str, set_slug: str, key: str) -> dict[str, Any]:
    """The editor's rule: ``base_revision`` (the prompt revision the change starts from) is required, and a prompt
    saved by someone else since is refused with 409 and who changed it."""
    prompt_set = _set(call, organisation, project, set_slug)
    current = selectors.prompt_get(actor=call.actor, prompt_set=prompt_set, key=key)
    base_revision = _whole(call.body.get("base_revision"), "base_revision", required=True)
    changes = {name: call.body[name] for name in ("template", "description", "parameters", "metadata", "tests")
               if name in call.body}
    for name in ("template", "description"):
        if name in changes:
            _text(changes, name, required=True)
    updated = services.prompt_update(actor=call.actor, prompt=current, base_revision=base_revision or 0, **changes)
    return _describe_prompt(updated)


@creates
def set_submit(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    base_revision = _whole(call.body.get("base_revision"), "base_revision")
    version = services.prompt_set_submit(actor=call.actor, prompt_set=prompt_set, base_revision=base_revision)
    return _describe_version(version)


# Versions, review, publishing ----------------------------------------------------------------------------------


def versions(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    return _page(call, selectors.versions_for(actor=call.actor, prompt_set=prompt_set), _describe_version)


def version(call: Call, organisation: str, project: str, set_slug: str, number: int) -> dict[str, Any]:
    return _describe_version(_version(call, organisation, project, set_slug, number), full=True)


def version_approve(call: Call, organisation: str, project: str, set_slug: str, number: int) -> dict[str, Any]:
    found = _version(call, organisation, project, set_slug, number)
    approved = services.version_approve(
        actor=call.actor,
        version=found,
        comment=_text(call.body, "comment", default="") or "",
        override=_boolean(call.body, "override"),
    )
    return _describe_version(approved)


def version_request_changes(call: Call, organisation: str, project: str, set_slug: str, number: int) -> dict[str, Any]:
    found = _version(call, organisation, project, set_slug, number)
    rejected = services.version_request_changes(
        actor=call.actor, version=found, comment=_text(call.body, "comment", required=True)
    )
    return _describe_version(rejected)


@creates
def version_publish(call: Call, organisation: str, project: str, set_slug: str, number: int) -> dict[str, Any]:
    found = _version(call, organisation, project, set_slug, number)
    environment = selectors.environment_get(
        actor=call.actor, project=found.prompt_set.project, slug=_text(call.body, "environment", required=True)
    )
    return _describe_release(services.version_publish(actor=call.actor, version=found, environment=environment))


@creates
def set_rollback(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    prompt_set = _set(call, organisation, project, set_slug)
    environment = selectors.environment_get(
        actor=call.actor, project=prompt_set.project, slug=_text(call.body, "environment", required=True)
    )
    number = _whole(call.body.get("version"), "version", required=True) or 0
    release = rollback_environment(actor=call.actor, prompt_set=prompt_set, number=number, environment=environment)
    return _describe_release(release)


def releases(call: Call, organisation: str, project: str) -> dict[str, Any]:
    found = _project(call, organisation, project)
    environment = call.query("environment")
    set_slug = call.query("set")
    return _page(
        call,
        api_selectors.releases_for(
            actor=call.actor,
            project=found,
            environment=selectors.environment_get(actor=call.actor, project=found, slug=environment)
            if environment else None,
            prompt_set=selectors.prompt_set_get(actor=call.actor, project=found, slug=set_slug) if set_slug else None,
        ),
        _describe_release,
    )


def release(call: Call, organisation: str, project: str, release_id: int) -> dict[str, Any]:
    found = api_selectors.release_get(
        actor=call.actor, project=_project(call, organisation, project), release_id=release_id
    )
    acknowledgements = distribution_selectors.acknowledgements_for(release=found)
    return {**_describe_release(found), "acknowledgements": [_describe_acknowledgement(e) for e in acknowledgements]}


# Instances and the audit trail ------------------------------------------------------------------------------------


def instances(call: Call, organisation: str) -> dict[str, Any]:
    found = selectors.organisation_get(actor=call.actor, slug=organisation)
    project_slug, environment_slug = call.query("project"), call.query("environment")
    project_found = (
        selectors.project_get(actor=call.actor, organisation_slug=organisation, project_slug=project_slug)
        if project_slug else None
    )
    if environment_slug and project_found is None:
        raise ApplicationError("filter by environment together with project", {"field": "environment"})
    environment = (
        selectors.environment_get(actor=call.actor, project=project_found, slug=environment_slug)
        if environment_slug and project_found else None
    )
    rows = distribution_selectors.instances_for(
        actor=call.actor, organisation=found, project=project_found, environment=environment
    )
    page = _page(call, rows, lambda row: {"row": row})
    states = distribution_selectors.instance_states([item["row"] for item in page["items"]])
    page["items"] = [_describe_instance(state) for state in states]
    return page


def audit(call: Call, organisation: str) -> dict[str, Any]:
    found = selectors.organisation_get(actor=call.actor, slug=organisation)
    project_slug = call.query("project")
    events = audit_events_for(
        actor=call.actor,
        organisation=found,
        project=selectors.project_get(actor=call.actor, organisation_slug=organisation, project_slug=project_slug)
        if project_slug else None,
        actor_username=call.query("actor"),
        action=call.query("action"),
        since=_moment(call.query("since"), "since"),
        until=_moment(call.query("until"), "until"),
    )
    return _page(call, events, _describe_event)


# Prompts kept in a repository: files in, files out ----------------------------------------------------------------


def _files(body: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    files = body.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ApplicationError("files must be an object of file names to their text", {"field": "files"})
    for name in files:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ApplicationError(f"{name!r} is not a plain file name", {"field": "files"})
    if len(files) > fileformat.MAX_FILES:
        raise ApplicationError(f"more than {fileformat.MAX_FILES} files", {"field": "files"})
    return [(name, text.encode("utf-8")) for name, text in sorted(files.items())]


def set_files(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    """Pull: the set's editing content, one of its versions (``?version=N``) or what an environment runs
    (``?environment=ENV``), as the files of the prompt file format."""
    prompt_set = _set(call, organisation, project, set_slug)
    number = _whole(call.query("version"), "version")
    environment_slug = call.query("environment")
    if number is not None and environment_slug is not None:
        raise ApplicationError("give version or environment, not both")
    if environment_slug is not None:
        environment = selectors.environment_get(actor=call.actor, project=prompt_set.project, slug=environment_slug)
        current = selectors.current_release(environment=environment, prompt_set=prompt_set)
        if current is None:
            raise NotFound(f"Nothing of {prompt_set.slug} was published to {environment.slug} yet.")
        number = current.version.number
    exported = transfer.prompt_set_export(actor=call.actor, prompt_set=prompt_set, version=number)
    files = fileformat.export_files(name=exported.name, description=exported.description, prompts=exported.prompts)
    return {
        "set": prompt_set.slug,
        "status": prompt_set.status,
        "revision": prompt_set.revision,
        "version": number,
        "files": {name: data.decode("utf-8") for name, data in files},
    }


def _content_key(prompts: list[dict[str, Any]], tests: dict[str, Any]) -> tuple[str, str]:
    return content_digest([normalise_prompt(p) for p in prompts]), json.dumps(tests, sort_keys=True)


def _submittable(prompt_set: PromptSet) -> bool:
    """Whether the set's editing content differs from its newest version (so a submit is worth a version)."""
    prompt_set.refresh_from_db()
    if prompt_set.status != SetStatus.LIVE:
        return False
    newest = prompt_set.versions.order_by("-number").first()
    if newest is None:
        return prompt_set.prompts.exists()
    current = list(prompt_set.prompts.order_by("key"))
    mine = _content_key(
        [{"id": p.key, "template": p.template, "description": p.description, "parameters": p.parameters,
          "metadata": p.metadata} for p in current],
        {p.key: p.tests for p in current if p.tests},
    )
    return mine != _content_key(newest.snapshot.get("prompts", []), newest.snapshot.get("tests", {}))


def set_push(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    """Push: make the set's editing content what the files say (prompts not in the files are removed, unless
    ``prune`` is false); with ``submit``, submit it for review. Never approves or publishes. ``dry_run`` only says
    what would change. A LOCKED set is reopened first when the files change it; a set in REVIEW is refused (409)."""
    found = _project(call, organisation, project)
    collection = fileformat.parse_files(_files(call.body), origin="repository")
    dry_run, submit = _boolean(call.body, "dry_run"), _boolean(call.body, "submit")
    prune = _boolean(call.body, "prune", True)
    base_revision = _whole(call.body.get("base_revision"), "base_revision")
    plan = transfer.import_plan(actor=call.actor, project=found, set_slug=set_slug, collection=collection, prune=prune)
    submitted = None
    if not dry_run:
        with transaction.atomic():
            existing = PromptSet.objects.filter(project=found, slug=set_slug).first()
            changes_prompts = bool(plan.added or plan.changed or plan.removed)
            if existing is not None and base_revision is not None and existing.revision != base_revision:
                raise Conflict(
                    f"{set_slug} changed since revision {base_revision} (it is at revision {existing.revision}); "
                    "nothing was pushed. Pull, merge, and push again."
                )
            if existing is not None and existing.status == SetStatus.LOCKED and changes_prompts:
                services.prompt_set_reopen(actor=call.actor, prompt_set=existing)
                existing.refresh_from_db()
                base_revision = None if base_revision is None else existing.revision
            plan = transfer.prompt_set_import(
                actor=call.actor, project=found, set_slug=set_slug, collection=collection, prune=prune,
                base_revision=base_revision, source="anvil prompts push",
            )
        prompt_set = PromptSet.objects.get(project=found, slug=set_slug)
        if submit and _submittable(prompt_set):
            submitted = _describe_version(services.prompt_set_submit(actor=call.actor, prompt_set=prompt_set))
    current = PromptSet.objects.filter(project=found, slug=set_slug).first()
    return {
        "set": set_slug,
        "dry_run": dry_run,
        "changes": plan.has_changes,
        "added": plan.added,
        "changed": plan.changed,
        "removed": plan.removed,
        "unchanged": plan.unchanged,
        "kept": plan.kept,
        "set_changes": plan.set_changes,
        "status": current.status if current else None,
        "revision": current.revision if current else None,
        "submitted": submitted,
    }


def set_check(call: Call, organisation: str, project: str, set_slug: str) -> dict[str, Any]:
    """Run the test cases of the given files (or, without ``files``, of the set's editing content); changes nothing.
    Files that do not parse or whose templates do not compile are refused (400, naming the file and line)."""
    found = _project(call, organisation, project)
    if "files" in call.body:
        prompts_in = fileformat.parse_files(_files(call.body), origin="repository").prompts
    else:
        prompt_set = selectors.prompt_set_get(actor=call.actor, project=found, slug=set_slug)
        prompts_in = transfer.prompt_set_export(actor=call.actor, prompt_set=prompt_set).prompts
    tests = {p["id"]: p["tests"] for p in prompts_in if p.get("tests")}
    results = results_for([normalise_prompt(p) for p in prompts_in], tests)
    return {
        "prompts": len(prompts_in),
        "passed": results["passed"],
        "failed": results["failed"],
        "failing": failing_samples(results),
        "results": results["prompts"],
    }
