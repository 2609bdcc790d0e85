"""``/forges/``: the Forges menu (peers, browsing them, connected projects, copies and their updates)."""

from django.urls import path

from anvil_forge.peering import views

app_name = "peering"

_remote = "<slug:org>/peers/<slug:peer>/p/<slug:rorg>/<slug:rproject>/"

urlpatterns = [
    path("", views.peer_list, name="peer_list"),
    path("sets/<int:set_id>/upstream", views.set_upstream, name="set_upstream"),
    path("sets/<int:set_id>/upstream/diff", views.set_upstream_diff, name="set_upstream_diff"),
    path("<slug:org>/", views.peer_list, name="peer_list_org"),
    path("<slug:org>/add", views.peer_add, name="peer_add"),
    path("<slug:org>/peers/<slug:peer>/", views.peer_detail, name="peer_detail"),
    path("<slug:org>/peers/<slug:peer>/check", views.peer_check, name="peer_check"),
    path("<slug:org>/peers/<slug:peer>/token", views.peer_token, name="peer_token"),
    path("<slug:org>/peers/<slug:peer>/remove", views.peer_remove, name="peer_remove"),
    path(_remote, views.remote_project, name="remote_project"),
    path(_remote + "connect", views.remote_connect, name="remote_connect"),
    path(_remote + "s/<slug:rset>/", views.remote_set, name="remote_set"),
    path(_remote + "s/<slug:rset>/v/<int:number>/", views.remote_version, name="remote_version"),
    path(_remote + "s/<slug:rset>/v/<int:number>/copy", views.remote_copy, name="remote_copy"),
    path("<slug:org>/connected/<int:reference>/", views.reference_detail, name="reference_detail"),
    path("<slug:org>/connected/<int:reference>/disconnect", views.reference_disconnect, name="reference_disconnect"),
]
