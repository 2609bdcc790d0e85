"""Sign in and out, the home page and the organisation switcher."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from anvil_forge.accounts.models import Membership
from anvil_forge.web.access import organisation_get
from anvil_forge.web.context_processors import SESSION_ORGANISATION

login_view = LoginView.as_view(template_name="web/login.html", redirect_authenticated_user=True)
logout_view = LogoutView.as_view()


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the projects of their current organisation (or say they have none)."""
    memberships = Membership.objects.filter(user=request.user).select_related("organisation")
    wanted = request.session.get(SESSION_ORGANISATION)
    chosen = next((m for m in memberships if m.organisation.slug == wanted), None) or memberships.first()
    if chosen is None:
        return render(request, "web/no_organisation.html")
    return redirect("web:projects", org=chosen.organisation.slug)


@login_required
def switch_organisation(request: HttpRequest) -> HttpResponse:
    organisation = organisation_get(request, request.GET.get("org", ""))
    return redirect("web:projects", org=organisation.slug)
