from django.apps import AppConfig


class PeeringConfig(AppConfig):
    name = "anvil_forge.peering"
    label = "peering"

    def ready(self) -> None:
        from anvil_forge.peering.config import configured_peers

        configured_peers()  # a wrong ANVIL_PEERS stops the FORGE at start, with the reason
