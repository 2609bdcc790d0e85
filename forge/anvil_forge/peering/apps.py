from django.apps import AppConfig


class PeeringConfig(AppConfig):
    name = "anvil_forge.peering"
    label = "peering"
