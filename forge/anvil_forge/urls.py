from django.urls import include, path

from anvil_forge.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("anvil_forge.distribution.urls")),
    path("", include("anvil_forge.web.urls")),
]
