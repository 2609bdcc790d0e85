"""An organisation's members and invitations: invite, change roles, remove, hand over reset links.

Every member sees who belongs and with which role; owners and admins act (the services check again).
``/invite/<token>/`` is where an invitation lands: a new person chooses a username and password, a
signed-in user joins with one click.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from anvil_forge.accounts import mail, selectors, services
from anvil_forge.accounts.models import Membership, Role
from anvil_forge.core.exceptions import ApplicationError, NotFound, PermissionDenied
from anvil_forge.web.access import Place, place_get

BACKEND = "anvil_forge.accounts.backends.RateLimitedModelBackend"


def forge_url(request: HttpRequest) -> str:
    """This FORGE's address as the person acting reached it (the host is checked against ALLOWED_HOSTS)."""
    return request.build_absolute_uri("/").rstrip("/")


def _members_page(request: HttpRequest, place: Place, *, status: int = 200, **extra: Any) -> HttpResponse:
    manage = "manage_members" in place.caps
    my_role = next(
        (
            m.role
            for m in selectors.members_for(actor=request.user, organisation=place.organisation)
            if m.user_id == request.user.pk
        ),
        "",
    )
    roles = [(value, label) for value, label in Role.choices if my_role == Role.OWNER or value != Role.OWNER]
    return render(
        request,
        "web/members.html",
        {
            **place.context(),
            "nav_section": "members",
            "manage": manage,
            "members": selectors.members_for(actor=request.user, organisation=place.organisation),
            "invitations": selectors.invitations_pending_for(actor=request.user, organisation=place.organisation)
            if manage
            else [],
            "roles": roles,
            "email_enabled": mail.email_enabled(),
            "invite_days": services.INVITATION_DAYS,
            "form": {"role": Role.EDITOR, "email": "", "days": str(services.INVITATION_DAYS), **extra.pop("form", {})},
            **extra,
        },
        status=status,
    )


def _membership(request: HttpRequest, place: Place, membership_id: int) -> Membership:
    found = selectors.members_for(actor=request.user, organisation=place.organisation).filter(pk=membership_id).first()
    if found is None:
        raise NotFound("No such member.")
    return found


@login_required
@never_cache
def member_list(request: HttpRequest, org: str) -> HttpResponse:
    return _members_page(request, place_get(request, org))


@login_required
@require_POST
@never_cache
def invitation_create(request: HttpRequest, org: str) -> HttpResponse:
    place = place_get(request, org)
    form = {key: request.POST.get(key, "").strip() for key in ("role", "email", "days")}
    try:
        try:
            days = int(form["days"] or services.INVITATION_DAYS)
        except ValueError:
            raise ApplicationError("The invitation's lifetime is a whole number of days.") from None
        issued = services.invitation_create(
            actor=request.user,
            organisation=place.organisation,
            role=form["role"],
            email=form["email"],
            days=days,
            base_url=forge_url(request),
        )
    except ApplicationError as exc:
        return _members_page(request, place, status=exc.status_code, invite_error=exc.message, form=form)
    return _members_page(request, place, issued=issued)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, org: str, invitation_id: int) -> HttpResponse:
    place = place_get(request, org)
    invitation = (
        selectors.invitations_pending_for(actor=request.user, organisation=place.organisation)
        .filter(pk=invitation_id)
        .first()
    )
    if invitation is None:
        raise NotFound("No such pending invitation.")
    services.invitation_revoke(actor=request.user, invitation=invitation)
    messages.success(request, "Invitation revoked: its link no longer works.")
    return redirect("web:members", org)


@login_required
@require_POST
def member_role(request: HttpRequest, org: str, membership_id: int) -> HttpResponse:
    place = place_get(request, org)
    membership = _membership(request, place, membership_id)
    try:
        changed = services.membership_set_role(
            actor=request.user, membership=membership, role=request.POST.get("role", "")
        )
    except ApplicationError as exc:
        return _members_page(request, place, status=exc.status_code, member_error=exc.message)
    messages.success(request, f"{changed.user.get_username()} is now {changed.get_role_display().lower()}.")
    return redirect("web:members", org)


@login_required
def member_remove(request: HttpRequest, org: str, membership_id: int) -> HttpResponse:
    place = place_get(request, org)
    membership = _membership(request, place, membership_id)
    if "manage_members" not in place.caps:
        raise PermissionDenied(f"Your role in {place.organisation.slug} may not manage members.")
    error, status = "", 200
    if request.method == "POST":
        try:
            services.membership_remove(actor=request.user, membership=membership)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            messages.success(
                request, f"{membership.user.get_username()} is no longer a member of {place.organisation.name}."
            )
            if membership.user_id == request.user.pk:
                return redirect("web:home")
            return redirect("web:members", org)
    return render(
        request,
        "web/member_remove.html",
        {**place.context(), "nav_section": "members", "membership": membership, "error": error},
        status=status,
    )


@login_required
@require_POST
@never_cache
def member_reset_link(request: HttpRequest, org: str, membership_id: int) -> HttpResponse:
    place = place_get(request, org)
    membership = _membership(request, place, membership_id)
    try:
        url = services.password_reset_link_issue(actor=request.user, membership=membership, base_url=forge_url(request))
    except ApplicationError as exc:
        return _members_page(request, place, status=exc.status_code, member_error=exc.message)
    return _members_page(request, place, reset_for=membership.user, reset_url=url)


@never_cache
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the page an invitation link opens."""
    invitation = services.invitation_pending(token)
    if invitation is None:
        return render(request, "web/invite.html", {"invalid": True}, status=404)
    form = {"username": "", "email": invitation.email}
    error, status = "", 200
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = services.invitation_accept(token=token, user=request.user)
            else:
                form = {key: request.POST.get(key, "").strip() for key in ("username", "email")}
                password = request.POST.get("password", "")
                if password != request.POST.get("password2", ""):
                    raise ApplicationError("The two passwords differ.")
                membership = services.invitation_accept(
                    token=token, username=form["username"], password=password, email=form["email"]
                )
                login(request, membership.user, backend=BACKEND)
        except ApplicationError as exc:
            error, status = exc.message, exc.status_code
        else:
            organisation = membership.organisation
            messages.success(
                request, f"Welcome to {organisation.name}: you are {membership.get_role_display().lower()}."
            )
            return redirect("web:projects", organisation.slug)
    return render(
        request,
        "web/invite.html",
        {"invitation": invitation, "form": form, "error": error, "role_label": Role(invitation.role).label},
        status=status,
    )
