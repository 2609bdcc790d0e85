"""Import into a prompt set (upload, preview with per-prompt diffs, apply) and download a version as a zip.

The upload is read once, checked and kept in the session until it is applied, so the preview shows exactly
what will be written; applying refuses a set that changed since the preview.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from anvil_forge.core.exceptions import ApplicationError, PermissionDenied
from anvil_forge.prompts import selectors
from anvil_forge.prompts.fileformat import (
    MAX_UPLOAD_BYTES,
    Collection,
    build_zip,
    export_files,
    load_upload,
)
from anvil_forge.prompts.models import SetStatus
from anvil_forge.prompts.transfer import import_plan, prompt_set_export, prompt_set_import
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.diffing import snapshot_diff

SESSION_PREFIX = "anvil.import:"
_TOO_LARGE = "anvil_upload_too_large"


class _UploadLimit(FileUploadHandler):
    """Stops reading an upload once it passes :data:`MAX_UPLOAD_BYTES`; the view then says so."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > MAX_UPLOAD_BYTES:
            setattr(self.request, _TOO_LARGE, True)
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _limit_text() -> str:
    return f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB"


@csrf_exempt  # only to install the upload limit before the body is read: set_import_checked checks the token
@login_required
def set_import(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    if request.method == "POST":
        request.upload_handlers.insert(0, _UploadLimit(request))
        try:
            request.FILES  # noqa: B018 - read the body now, with the limit in place
        except TooManyFilesSent:
            return _refuse_early(request, org, project, prompt_set,
                                 "Too many files in one upload: put the prompt files in a .zip and upload that.")
        except RequestDataTooBig:
            return _refuse_early(request, org, project, prompt_set,
                                 f"The upload is larger than {_limit_text()}, the limit.")
    return set_import_checked(request, org, project, prompt_set)


def _refuse_early(request: HttpRequest, org: str, project: str, prompt_set: str, message: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    _require_edit(place)
    return _page(request, place, status=400, error=message)


@csrf_protect
def set_import_checked(request: HttpRequest, org: str, project: str, prompt_set: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    _require_edit(place)
    if request.method != "POST":
        return _page(request, place)
    if request.POST.get("stage") == "apply":
        return _apply(request, place)
    if getattr(request, _TOO_LARGE, False):
        return _page(request, place, status=400, error=f"The upload is larger than {_limit_text()}, the limit.")
    prune = request.POST.get("prune") == "1"
    try:
        uploads = request.FILES.getlist("files")
        if sum(upload.size or 0 for upload in uploads) > MAX_UPLOAD_BYTES:
            raise ApplicationError(f"The upload is larger than {_limit_text()}, the limit.")
        collection = load_upload([(upload.name or "upload", upload.read()) for upload in uploads])
        plan = import_plan(actor=request.user, project=place.project, set_slug=place.prompt_set.slug,
                           collection=collection, prune=prune)
    except ApplicationError as exc:
        return _page(request, place, status=exc.status_code, error=exc.message, prune=prune)
    request.session[_session_key(place)] = {
        "collection": collection.to_json(), "prune": prune, "revision": plan.revision,
    }
    return _page(request, place, plan=plan, diff=snapshot_diff(plan.before, plan.after), prune=prune,
                 names=sorted(upload.name for upload in uploads))


def _apply(request: HttpRequest, place: Place) -> HttpResponse:
    pending = request.session.get(_session_key(place))
    if not pending:
        return _page(request, place, status=400,
                     error="There is no upload to apply (it was applied already, or the session ended): upload again.")
    try:
        collection = Collection.from_json(pending["collection"])
        plan = prompt_set_import(
            actor=request.user, project=place.project, set_slug=place.prompt_set.slug, collection=collection,
            prune=bool(pending.get("prune")), base_revision=pending.get("revision"), source="web upload",
        )
    except ApplicationError as exc:
        request.session.pop(_session_key(place), None)
        return _page(request, place, status=exc.status_code, error=exc.message)
    request.session.pop(_session_key(place), None)
    messages.success(request, f"Imported: {plan.summary}.")
    return redirect("web:set", place.organisation.slug, place.project.slug, place.prompt_set.slug)


def _require_edit(place: Place) -> None:
    if "edit" not in place.caps:
        raise PermissionDenied("Your role may not edit prompts, so it may not import them.")


def _session_key(place: Place) -> str:
    return f"{SESSION_PREFIX}{place.organisation.slug}/{place.project.slug}/{place.prompt_set.slug}"


def _page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    context = {
        **place.context(),
        "crumb": "Import",
        "is_live": place.prompt_set.status == SetStatus.LIVE,
        "limit": _limit_text(),
        "old_label": "Now",
        "new_label": "After the import",
        **extra,
    }
    return render(request, "web/set_import.html", context, status=status)


@login_required
def version_download(request: HttpRequest, org: str, project: str, prompt_set: str, number: int) -> HttpResponse:
    """Version ``number`` as a zip of prompt files (the layout ``anvil-forge export`` writes)."""
    place = place_get(request, org, project, prompt_set)
    version = selectors.version_get(actor=request.user, prompt_set=place.prompt_set, number=number)
    export = prompt_set_export(actor=request.user, prompt_set=place.prompt_set, version=version.number)
    data = build_zip(export_files(name=export.name, description=export.description, prompts=export.prompts))
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{project}-{prompt_set}-v{version.number}.zip"'
    return response
