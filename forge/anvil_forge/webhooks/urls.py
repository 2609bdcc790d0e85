"""``/o/<org>/webhooks/``: an organisation's webhooks, their delivery log and "send again" (owners and admins)."""

from django.urls import path

from anvil_forge.webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("o/<slug:org>/webhooks/", views.webhook_list, name="webhook_list"),
    path("o/<slug:org>/webhooks/<int:webhook_id>/", views.webhook_detail, name="webhook_detail"),
    path("o/<slug:org>/webhooks/<int:webhook_id>/secret/", views.webhook_secret, name="webhook_secret"),
    path("o/<slug:org>/webhooks/<int:webhook_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path(
        "o/<slug:org>/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/resend/",
        views.delivery_resend,
        name="delivery_resend",
    ),
]
