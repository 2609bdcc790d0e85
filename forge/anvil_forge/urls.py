from django.urls import include, path

from anvil_forge.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("anvil_forge.web.urls")),
]
