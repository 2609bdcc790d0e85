"""Sign in and out, the home page and the organisation switcher."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from anvil_forge.accounts.backends import login_is_limited
from anvil_forge.notifications.selectors import landing_path
from anvil_forge.web.access import organisation_get
from anvil_forge.web.context_processors import SESSION_ORGANISATION, memberships_of


class SignInView(LoginView):
    """Django's sign-in, saying so when sign-ins are paused after repeated failures (accounts.backends).

    Without an explicit ``?next=`` it lands where the user last worked (the set or project they last opened),
    else on their only project, else on the projects list.
    """

    template_name = "web/login.html"
    redirect_authenticated_user = True

    def get_success_url(self) -> str:
        return self.get_redirect_url() or landing_path(user=self.request.user) or super().get_success_url()

    def form_invalid(self, form):  # type: ignore[no-untyped-def]
        limited = login_is_limited(self.request, form.data.get("username"))
        return self.render_to_response(self.get_context_data(form=form, rate_limited=limited))


login_view = SignInView.as_view()
logout_view = LogoutView.as_view()


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the projects of their current organisation (or say they have none)."""
    memberships = memberships_of(request)
    wanted = request.session.get(SESSION_ORGANISATION)
    chosen = next((m for m in memberships if m.organisation.slug == wanted), None) or (
        memberships[0] if memberships else None
    )
    if chosen is None:
        return render(request, "web/no_organisation.html")
    return redirect("web:projects", org=chosen.organisation.slug)


@login_required
def switch_organisation(request: HttpRequest) -> HttpResponse:
    organisation = organisation_get(request, request.GET.get("org", ""))
    return redirect("web:projects", org=organisation.slug)
