"""``/api/v1/``: the LIVE API (the stream itself is routed in ``asgi.py``) and the OpenAPI document."""

from django.urls import path

from anvil_forge.distribution import views

app_name = "distribution"

urlpatterns = [
    path("openapi.json", views.openapi, name="openapi"),
    path("live/releases", views.releases, name="live-releases"),
    path("live/bundles/<slug:set_slug>", views.bundle, name="live-bundle"),
    path("live/checkin", views.checkin, name="live-checkin"),
]
