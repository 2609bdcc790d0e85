"""Placeholder pages until the web interface lands (issue: the FORGE web interface)."""

from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse

login_view = LoginView.as_view(template_name="web/login.html")


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Anvil FORGE")
