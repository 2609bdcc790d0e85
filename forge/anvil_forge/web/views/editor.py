"""The prompt editor: template with live checks, parameters table, preview, rename and delete.

Whatever the engineer typed comes back on every answer, saved or refused: the form is re-rendered from
the request, never from the database, unless the save succeeded.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from anvil_client.bundle import PARAMETER_TYPES, content_digest, normalise_prompt
from anvil_forge.core.exceptions import ApplicationError, Conflict
from anvil_forge.notifications.services import last_visit_record
from anvil_forge.prompts import selectors, services
from anvil_forge.prompts.analysis import prompt_analysis, prompt_preview
from anvil_forge.prompts.models import Prompt, PromptSet, PromptSetVersion, SetStatus
from anvil_forge.web import test_cases
from anvil_forge.web.access import Place, place_get
from anvil_forge.web.forms import (
    parameter_rows,
    parameters_from_rows,
    revision_field,
    rows_from_parameters,
    sample_values,
)

_JUST_SAVED = "anvil_editor_saved"


def _state_from_prompt(prompt: Prompt) -> dict[str, Any]:
    cases = test_cases.rows_from_tests(prompt.tests, prompt.parameters)
    return {
        "template": prompt.template,
        "description": prompt.description,
        "rows": rows_from_parameters(prompt.parameters),
        "metadata": json.dumps(prompt.metadata, indent=2, ensure_ascii=False) if prompt.metadata else "",
        "base_revision": prompt.revision,
        "samples": test_cases.first_sample_values(cases),  # the preview starts from the first test case
        "cases": cases,
        **_base_fields(prompt),
    }


def _base_fields(prompt: Prompt) -> dict[str, str]:
    """The text the engineer started from, carried in the form to show beside theirs and yours on a conflict."""
    return {
        "base_template": prompt.template,
        "base_description": prompt.description,
        "base_metadata": json.dumps(prompt.metadata, indent=2, ensure_ascii=False) if prompt.metadata else "",
    }


def _state_from_request(request: HttpRequest) -> dict[str, Any]:
    data = request.POST
    return {
        "template": data.get("template", ""),
        "description": data.get("description", ""),
        "rows": parameter_rows(data),
        "metadata": data.get("metadata", ""),
        "base_revision": data.get("base_revision", ""),
        "samples": sample_values(data),
        "cases": test_cases.case_rows(data),
        "base_template": data.get("base_template", ""),
        "base_description": data.get("base_description", ""),
        "base_metadata": data.get("base_metadata", ""),
    }


def _lenient_parameters(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Declarations for the live checks; a default that does not parse is ignored there (save reports it)."""
    try:
        return parameters_from_rows(rows)
    except ApplicationError:
        return [{**row, "default": None} for row in rows if row["name"]]


def _live(state: dict[str, Any]) -> dict[str, Any]:
    """The analysis, the sample value fields and the preview for the editor's right-hand column."""
    parameters = _lenient_parameters(state["rows"])
    analysis = prompt_analysis(state["template"], parameters)
    declared = {p["name"]: p for p in parameters}
    names = list(analysis.variables) + [name for name in declared if name not in analysis.variables]
    fields = [
        {"name": name, "value": state["samples"].get(name, ""), "parameter": declared.get(name)} for name in names
    ]
    preview, preview_error, preview_note = "", "", ""
    if analysis.ok:
        try:
            preview = prompt_preview(state["template"], parameters, _given(state["samples"], names))
        except ApplicationError as exc:
            if exc.extra.get("missing"):
                missing = ", ".join(exc.extra["missing"])
                preview_note = f"Type a sample value for {missing} to see the preview."
            else:
                preview_error = exc.message
    lines = state["template"].splitlines()
    error_text = lines[analysis.error_line - 1] if analysis.error_line and analysis.error_line <= len(lines) else ""
    return {
        "analysis": analysis,
        "error_text": error_text,
        "sample_fields": fields,
        "preview": preview,
        "preview_error": preview_error,
        "preview_note": preview_note,
    }


def _given(samples: dict[str, str], names: list[str]) -> dict[str, str]:
    """Sample values the engineer filled in (empty fields fall back to defaults or count as missing)."""
    return {name: samples[name] for name in names if samples.get(name, "") != ""}


def _editor(
    request: HttpRequest, place: Place, prompt: Prompt, state: dict[str, Any], *, status: int = 200, **extra: Any
) -> HttpResponse:
    prompt_set = place.prompt_set
    editable = "edit" in place.caps and (
        prompt_set.status == SetStatus.LIVE
        or (prompt_set.status == SetStatus.LOCKED and "reopen" in place.caps and prompt_set.archived_at is None)
    )
    latest = selectors.version_summaries_for(actor=request.user, prompt_set=prompt_set).first()
    context = {
        **place.context(),
        "prompt": prompt,
        "state": state,
        "editable": editable,
        # Editing a LOCKED set starts a new draft in place: the first save reopens it.
        "reopens": editable and prompt_set.status == SetStatus.LOCKED,
        "latest": latest,
        # "Submit for review" once the set has saved changes since its last version.
        "can_submit": "submit" in place.caps and prompt_set.status == SetStatus.LIVE
        and prompt_set.archived_at is None and _unsubmitted(prompt_set, latest),
        "types": PARAMETER_TYPES,
        "new_key": prompt.key,
        "unsaved": request.method == "POST" and request.resolver_match.url_name == "prompt",
        # The page after a successful save: the browser drops its kept draft.
        "just_saved": request.method == "GET" and request.session.pop(_JUST_SAVED, None) == prompt.pk,
        **_live(state),
        **_cases(prompt, state),
        **extra,
    }
    return render(request, "web/editor.html", context, status=status)


@login_required
def prompt_edit(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    prompt = selectors.prompt_get(actor=request.user, prompt_set=place.prompt_set, key=key)
    if request.method != "POST":
        # Working on a prompt is working on its set: signing in lands on the set next time.
        last_visit_record(user=request.user, project=place.project, prompt_set=place.prompt_set)
        return _editor(request, place, prompt, _state_from_prompt(prompt))
    state = _state_from_request(request)
    declare = request.POST.get("declare")
    if declare or request.POST.get("add_parameter") or request.POST.get("remove_parameter"):
        return _editor(request, place, prompt, _change_rows(state, declare, request.POST.get("remove_parameter")))
    cases = test_cases.change_rows(state["cases"], request.POST)
    if cases is not None:
        return _editor(request, place, prompt, {**state, "cases": cases})
    try:
        parameters = parameters_from_rows(state["rows"])
        metadata = _metadata(state["metadata"])
        tests = test_cases.tests_from_rows(state["cases"], parameters)
        base_revision = revision_field(request.POST, required=True)
        # "Replace <user>'s change with mine": the explicit choice after a conflict, naming the revision replaced.
        if request.POST.get("replace"):
            base_revision = revision_field({"base_revision": request.POST["replace"]}, required=True)  # type: ignore[arg-type]
    except ApplicationError as exc:
        return _editor(request, place, prompt, state, status=400, save_error=exc.message)
    was_locked = place.prompt_set.status == SetStatus.LOCKED
    try:
        saved = services.prompt_update(
            actor=request.user,
            prompt=prompt,
            base_revision=base_revision,
            template=state["template"],
            description=state["description"],
            parameters=parameters,
            metadata=metadata,
            tests=tests,
            reopen_locked=True,
        )
    except Conflict as exc:
        current = Prompt.objects.select_related("updated_by").filter(pk=prompt.pk).first()
        if current is None or "revision" not in exc.extra:
            return _editor(request, place, prompt, state, status=409, save_error=exc.message)
        # Keep the engineer's text and base revision: a plain Save conflicts again; only the explicit
        # "Replace <user>'s change with mine" (naming the revision it replaces) overwrites theirs.
        return _editor(request, place, prompt, state, status=409, conflict=_conflict(state, current))
    except ApplicationError as exc:
        return _editor(
            request,
            place,
            prompt,
            state,
            status=exc.status_code,
            save_error=exc.message,
            error_line=exc.extra.get("line"),
        )
    if saved.revision == base_revision:  # nothing differed from what is saved (a LOCKED set stays LOCKED)
        messages.info(request, f"Nothing to save: {prompt.key} is unchanged.")
    else:
        reopened = was_locked
        messages.success(request, f"Saved {prompt.key}.{_cases_summary(prompt, state)} {_next_step(place, reopened)}")
    request.session[_JUST_SAVED] = prompt.pk
    return redirect("web:prompt", org, project, prompt_set, prompt.key)


def _conflict(state: dict[str, Any], theirs: Prompt) -> dict[str, Any]:
    """Base (what the engineer started from), theirs (saved since, by whom and when) and yours, side by side."""
    theirs_metadata = json.dumps(theirs.metadata, indent=2, ensure_ascii=False) if theirs.metadata else ""
    columns = [
        ("base", f"Revision {state['base_revision']}: where you started", state["base_template"]),
        ("theirs", f"Revision {theirs.revision}: saved by {_name(theirs)}", theirs.template),
        ("yours", "Yours: not saved yet", state["template"]),
    ]
    others = []
    for field, label in (("description", "description"), ("metadata", "metadata")):
        theirs_value = theirs_metadata if field == "metadata" else theirs.description
        if theirs_value != state[f"base_{field}"]:
            others.append(label)
    return {
        "who": _name(theirs),
        "when": theirs.updated_at,
        "revision": theirs.revision,
        "columns": [
            {"kind": kind, "title": title, "lines": _marked_lines(state["base_template"], text, mark=kind != "base")}
            for kind, title, text in columns
        ],
        "other_fields": others,
    }


def _name(prompt: Prompt) -> str:
    return prompt.updated_by.get_username() if prompt.updated_by else "someone"


def _marked_lines(base: str, text: str, *, mark: bool) -> list[dict[str, Any]]:
    """The lines of ``text``, each marked ``changed`` when it is not in ``base`` (for the conflict view)."""
    lines = text.splitlines() or [""]
    changed = [False] * len(lines)
    if mark:
        matcher = difflib.SequenceMatcher(a=base.splitlines(), b=lines, autojunk=False)
        for op, _a1, _a2, b1, b2 in matcher.get_opcodes():
            if op != "equal":
                changed[b1:b2] = [True] * (b2 - b1)
    return [{"text": line, "changed": flag} for line, flag in zip(lines, changed, strict=True)]


def _next_step(place: Place, reopened: bool) -> str:
    """What the engineer does after a save: more edits, then the review."""
    again = "The set is LIVE again (a new draft). " if reopened else ""
    if "submit" in place.caps:
        return f"{again}Submit the set for review when you are done."
    return f"{again}When you are done, ask someone who may submit the set to send it for review."


def _unsubmitted(prompt_set: PromptSet, latest: PromptSetVersion | None) -> bool:
    """Whether the set's saved prompts differ from its last version (or it has none yet and has prompts)."""
    rows = prompt_set.prompts.values_list("key", "template", "description", "parameters", "metadata")
    prompts = sorted(
        (
            normalise_prompt({"id": k, "template": t, "description": d, "parameters": p, "metadata": m})
            for k, t, d, p, m in rows
        ),
        key=lambda p: p["id"],
    )
    if latest is None:
        return bool(prompts)
    return content_digest(prompts) != latest.digest


@login_required
@require_POST
def prompt_submit(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    """Submit the prompt's set for review from the editor, with an optional note for the reviewer."""
    place = place_get(request, org, project, prompt_set)
    prompt = selectors.prompt_get(actor=request.user, prompt_set=place.prompt_set, key=key)
    note = request.POST.get("note", "")
    try:
        version = services.prompt_set_submit(
            actor=request.user,
            prompt_set=place.prompt_set,
            base_revision=revision_field(request.POST, required=True),
            note=note,
        )
    except ApplicationError as exc:
        return _editor(
            request, place, prompt, _state_from_prompt(prompt), status=exc.status_code, submit_error=exc.message,
            note=note,
        )
    results = version.snapshot.get("test_results")
    tested = f" Test cases: {results['passed']} pass, {results['failed']} fail." if results else ""
    messages.success(request, f"Submitted {place.prompt_set.slug} for review as version {version.number}.{tested}")
    return redirect("web:version", org, project, prompt_set, version.number)


def _cases(prompt: Prompt, state: dict[str, Any]) -> dict[str, Any]:
    """The "Test cases" section: the rows as typed and, when they are valid samples, each one's result."""
    parameters = _lenient_parameters(state["rows"])
    results, error = test_cases.case_results(
        key=prompt.key, template=state["template"], parameters=parameters, rows=state["cases"]
    )
    rows = []
    for i, row in enumerate(state["cases"]):
        result = results[i] if i < len(results) else None
        outcomes = result.checks if result is not None and len(result.checks) == len(row["checks"]) else []
        rows.append({
            "index": i,
            "name": row["name"],
            "result": result,
            "fields": [{**p, "value": row["values"].get(p["name"], "")} for p in parameters],
            "checks": [{**c, "outcome": outcomes[j] if outcomes else None} for j, c in enumerate(row["checks"])],
        })
    return {"cases": rows, "cases_error": error, "check_kinds": test_cases.check_kinds(),
            "cases_failing": sum(1 for r in results if r is not None and not r.ok)}


def _cases_summary(prompt: Prompt, state: dict[str, Any]) -> str:
    if not state["cases"]:
        return ""
    context = _cases(prompt, state)
    failing, total = context["cases_failing"], len(state["cases"])
    if failing:
        return f" {failing} of {total} test case{'s' if total != 1 else ''} fail{'s' if failing == 1 else ''}."
    return f" All {total} test case{'s' if total != 1 else ''} pass."


def _change_rows(state: dict[str, Any], declare: str | None, remove: str | None) -> dict[str, Any]:
    rows = state["rows"]
    if declare:
        analysis = prompt_analysis(state["template"], _lenient_parameters(rows))
        names = analysis.undeclared if declare == "*" else [declare] if declare in analysis.undeclared else []
        rows += [{"name": n, "type": "string", "required": True, "default": "", "description": ""} for n in names]
    elif remove is not None:
        rows = [row for index, row in enumerate(rows) if str(index) != remove]
    else:
        rows.append({"name": "", "type": "string", "required": False, "default": "", "description": ""})
    return {**state, "rows": rows}


def _metadata(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ApplicationError(f"The metadata is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise ApplicationError('The metadata must be a JSON object, for example {"model": "gpt-4o"}.')
    return value


@login_required
@require_POST
def prompt_check(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    """htmx: the analysis, sample fields and preview for the template and parameters as typed."""
    place = place_get(request, org, project, prompt_set)
    prompt = selectors.prompt_get(actor=request.user, prompt_set=place.prompt_set, key=key)
    context = {**place.context(), "prompt": prompt, **_live(_state_from_request(request))}
    return render(request, "web/partials/editor_live.html", context)


@login_required
@require_POST
def prompt_preview_fragment(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    """htmx: only the preview, when a sample value changes (the sample fields keep focus)."""
    place_get(request, org, project, prompt_set)
    live = _live(_state_from_request(request))
    return render(request, "web/partials/preview.html", live)


@login_required
@require_POST
def prompt_rename(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    prompt = selectors.prompt_get(actor=request.user, prompt_set=place.prompt_set, key=key)
    new_key = request.POST.get("new_key", "").strip()
    try:
        renamed = services.prompt_rename(
            actor=request.user,
            prompt=prompt,
            new_key=new_key,
            base_revision=revision_field(request.POST),
        )
    except ApplicationError as exc:
        return _editor(
            request,
            place,
            prompt,
            _state_from_prompt(prompt),
            status=exc.status_code,
            rename_error=exc.message,
            new_key=new_key,
        )
    messages.success(request, f"Renamed {key} to {renamed.key}.")
    return redirect("web:prompt", org, project, prompt_set, renamed.key)


@login_required
def prompt_delete(request: HttpRequest, org: str, project: str, prompt_set: str, key: str) -> HttpResponse:
    place = place_get(request, org, project, prompt_set)
    prompt = selectors.prompt_get(actor=request.user, prompt_set=place.prompt_set, key=key)
    error, status = "", 200
    if request.method == "POST":
        try:
            services.prompt_delete(actor=request.user, prompt=prompt, base_revision=revision_field(request.POST))
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(request, f"Deleted {key}.")
            return redirect("web:set", org, project, prompt_set)
    return render(
        request,
        "web/prompt_delete.html",
        {**place.context(), "prompt": prompt, "error": error},
        status=status,
    )
