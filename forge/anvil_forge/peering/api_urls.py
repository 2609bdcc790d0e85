"""``/api/v1/peer/``: the read-only API other FORGEs browse with a ``peer`` ACCESS_TOKEN."""

from django.urls import path

from anvil_forge.peering import api

app_name = "peer_api"

urlpatterns = [
    path("projects", api.projects, name="projects"),
    path("projects/<slug:organisation>/<slug:project>/sets", api.sets, name="sets"),
    path("projects/<slug:organisation>/<slug:project>/sets/<slug:set_slug>/versions", api.versions, name="versions"),
    path(
        "projects/<slug:organisation>/<slug:project>/sets/<slug:set_slug>/versions/<int:number>",
        api.version,
        name="version",
    ),
]
