from django.apps import AppConfig


class PeeringConfig(AppConfig):
    name = "anvil_forge.peering"
    label = "peering"

    def ready(self) -> None:
        from anvil_forge.peering.config import configured_peers, private_networks

        configured_peers()  # a wrong ANVIL_PEERS stops the FORGE at start, with the reason
        private_networks()  # and so does a wrong ANVIL_PEER_PRIVATE_NETWORKS
