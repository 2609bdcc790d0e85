"""Starting from empty: the first-run setup page, new organisations and projects, project and prompt set
settings (names, environments, review versions, four eyes, archiving)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from anvil_forge.accounts import services as account_services
from anvil_forge.accounts.models import Role
from anvil_forge.core.exceptions import ApplicationError, PermissionDenied
from anvil_forge.prompts import selectors, services
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.views.members import BACKEND


def _require_cap(place: Place, capability: str, doing: str) -> None:
    """Pages that only some roles may open answer 403 to the others (the services check again on POST)."""
    if capability not in place.caps:
        raise PermissionDenied(f"Your role in {place.organisation.slug} may not {doing}.")


def _checked(request: HttpRequest, name: str) -> bool:
    return request.POST.get(name) in ("1", "on", "true", "yes")


# First run ------------------------------------------------------------------------------------------------

_SETUP_FIELDS = ("username", "email", "organisation_slug", "organisation_name", "project_slug", "project_name")


@never_cache
def setup(request: HttpRequest, token: str) -> HttpResponse:
    """Public, once: the first user, their organisation and first project; then they are signed in."""
    if not account_services.setup_link_usable(token):
        return render(request, "web/setup.html", {"invalid": True}, status=404)
    form: dict[str, Any] = {key: "" for key in _SETUP_FIELDS} | {"staging": True}
    error, status = "", 200
    if request.method == "POST":
        form = {key: request.POST.get(key, "").strip() for key in _SETUP_FIELDS} | {
            "staging": _checked(request, "staging")
        }
        try:
            password = request.POST.get("password", "")
            if password != request.POST.get("password2", ""):
                raise ApplicationError("The two passwords differ.")
            result = account_services.setup_complete(token=token, password=password, **form)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            login(request, result.user, backend=BACKEND)
            messages.success(
                request,
                f"Welcome, {result.user.get_username()}. {result.organisation.name} and its project "
                f"{result.project.name} are ready: create its first prompt set below.",
            )
            return redirect("web:project", result.organisation.slug, result.project.slug)
    return render(request, "web/setup.html", {"form": form, "error": error}, status=status)


# Organisations and projects -------------------------------------------------------------------------------


@login_required
def organisation_new(request: HttpRequest) -> HttpResponse:
    form = {"slug": "", "name": ""}
    error, status = "", 200
    if request.method == "POST":
        form = {key: request.POST.get(key, "").strip() for key in form}
        try:
            organisation = account_services.organisation_create(actor=request.user, **form)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Created {organisation.name}; you are its owner. Add its first project.")
            return redirect("web:project_new", organisation.slug)
    return render(request, "web/organisation_new.html", {"form": form, "error": error}, status=status)


@login_required
def project_new(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    _require_cap(place, "manage_project", "create projects")
    form: dict[str, Any] = {"slug": "", "name": "", "description": "", "staging": True}
    error, status = "", 200
    if request.method == "POST":
        form = {key: request.POST.get(key, "").strip() for key in ("slug", "name", "description")}
        form["staging"] = _checked(request, "staging")
        try:
            project = services.project_create(
                actor=request.user,
                organisation=place.organisation,
                slug=form["slug"],
                name=form["name"],
                description=form["description"],
                staging=form["staging"],
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Created the project {project.name}. Add its first prompt set below.")
            return redirect("web:project", org, project.slug)
    return render(request, "web/project_new.html", {**place.context(), "form": form, "error": error}, status=status)


# Project settings -----------------------------------------------------------------------------------------


def _settings_page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    project = place.project
    return render(
        request,
        "web/project_settings.html",
        {
            **place.context(),
            "is_owner": request.user.is_authenticated
            and place.organisation.memberships.filter(user=request.user, role=Role.OWNER).exists(),
            "environments": selectors.environments_for(actor=request.user, project=project),
            "archived_sets": selectors.prompt_sets_for(actor=request.user, project=project, archived=True),
            **extra,
        },
        status=status,
    )


@login_required
def project_settings(request: HttpRequest, org: str, project: str) -> HttpResponse:
    place = place_get(request, org, project)
    _require_cap(place, "manage_project", "change project settings")
    if request.method != "POST":
        return _settings_page(request, place)
    changes: dict[str, Any] = {
        "name": request.POST.get("name", ""),
        "description": request.POST.get("description", ""),
    }
    if "four_eyes_shown" in request.POST:
        changes["require_four_eyes"] = _checked(request, "require_four_eyes")
    try:
        updated = services.project_update(actor=request.user, project=place.project, **changes)
    except ApplicationError as exc:
        return _settings_page(request, place, status=exc.status_code, project_error=exc.message)
    messages.success(request, f"Saved the settings of {updated.name}.")
    return redirect("web:project_settings", org, project)


@login_required
@require_POST
def environment_add(request: HttpRequest, org: str, project: str) -> HttpResponse:
    place = place_get(request, org, project)
    form = {key: request.POST.get(key, "").strip() for key in ("slug", "name")}
    try:
        environment = services.environment_create(
            actor=request.user,
            project=place.project,
            slug=form["slug"],
            name=form["name"],
            accepts_review_versions=_checked(request, "accepts_review_versions"),
        )
    except ApplicationError as exc:
        return _settings_page(request, place, status=exc.status_code, environment_error=exc.message, env_form=form)
    messages.success(request, f"Added the environment {environment.slug}. Create a token for it on the Tokens page.")
    return redirect("web:project_settings", org, project)


@login_required
@require_POST
def environment_update(request: HttpRequest, org: str, project: str, environment: str) -> HttpResponse:
    place = place_get(request, org, project)
    found = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    try:
        services.environment_update(
            actor=request.user,
            environment=found,
            name=request.POST.get("name", found.name),
            accepts_review_versions=None if found.is_production else _checked(request, "accepts_review_versions"),
        )
    except ApplicationError as exc:
        return _settings_page(request, place, status=exc.status_code, environment_error=exc.message)
    messages.success(request, f"Saved the environment {found.slug}.")
    return redirect("web:project_settings", org, project)


@login_required
@require_POST
def environment_remove(request: HttpRequest, org: str, project: str, environment: str) -> HttpResponse:
    place = place_get(request, org, project)
    found = selectors.environment_get(actor=request.user, project=place.project, slug=environment)
    try:
        services.environment_delete(actor=request.user, environment=found)
    except ApplicationError as exc:
        return _settings_page(request, place, status=exc.status_code, environment_error=exc.message)
    messages.success(request, f"Removed the environment {found.slug}.")
    return redirect("web:project_settings", org, project)


# Prompt set settings --------------------------------------------------------------------------------------


@login_required
def set_settings(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    error, status = "", 200
    if request.method == "POST":
        try:
            updated = services.prompt_set_update(
                actor=request.user,
                prompt_set=place.prompt_set,
                name=request.POST.get("name", ""),
                description=request.POST.get("description", ""),
            )
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Saved {updated.name}.")
            return redirect("web:set_settings", org, project, prompt_set)
    return render(request, "web/set_settings.html", {**place.context(), "error": error}, status=status)


@login_required
@require_POST
def set_archive(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    archived = request.POST.get("archived", "1") != "0"
    try:
        services.prompt_set_archive(actor=request.user, prompt_set=place.prompt_set, archived=archived)
    except ApplicationError as exc:
        return render(
            request, "web/set_settings.html", {**place.context(), "error": exc.message}, status=exc.status_code
        )
    if archived:
        messages.success(request, f"Archived {place.prompt_set.name}. Restore it from the project's settings.")
        return redirect("web:project", org, project)
    messages.success(request, f"Restored {place.prompt_set.name}.")
    return redirect("web:set", org, project, prompt_set)
