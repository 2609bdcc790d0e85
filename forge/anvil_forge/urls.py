from django.urls import include, path

from anvil_forge.core.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include("anvil_forge.distribution.urls")),
    path("api/v1/peer/", include("anvil_forge.peering.api_urls")),
    path("api/v1/manage/", include("anvil_forge.api.urls")),
    path("forges/", include("anvil_forge.peering.urls")),
    path("", include("anvil_forge.webhooks.urls")),
    path("", include("anvil_forge.notifications.urls")),
    path("", include("anvil_forge.web.urls")),
]
