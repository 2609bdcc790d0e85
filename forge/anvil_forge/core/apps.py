from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "anvil_forge.core"
    label = "core"
