from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "anvil_forge.webhooks"
    label = "webhooks"
