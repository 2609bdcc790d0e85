"""ANVIL_PEERS: peers from configuration, refused at start with a reason when the setting is wrong."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from anvil_forge.peering.config import ConfiguredPeer, configured_peers


def test_empty_setting_means_no_peers():
    assert configured_peers("") == ()
    assert configured_peers("   ") == ()


def test_peers_are_read_with_the_url_normalised():
    peers = configured_peers('[{"name": "eu", "url": "https://forge.eu.example.com/", "token_env": "EU_TOKEN"}]')
    assert peers == (ConfiguredPeer(name="eu", url="https://forge.eu.example.com", token_env="EU_TOKEN"),)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "not valid JSON"),
        ('{"name": "eu"}', "must be a JSON list"),
        ('["eu"]', r"ANVIL_PEERS\[0\] must be an object"),
        ('[{"name": "eu", "url": "https://x", "token": "anvil_peer_x"}]', "unknown key 'token'.*token_env"),
        ('[{"name": "EU!", "url": "https://x", "token_env": "T"}]', "name 'EU!'"),
        ('[{"name": "eu", "url": "ftp://x", "token_env": "T"}]', "not an http"),
        ('[{"name": "eu", "url": "https://x", "token_env": "1BAD"}]', "must name an environment variable"),
        ('[{"name": "eu", "url": "https://x", "token_env": "T"}, {"name": "eu", "url": "https://y", "token_env": "U"}]',
         "used twice"),
    ],
)
def test_wrong_setting_is_refused_naming_the_problem(raw, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        configured_peers(raw)


def test_a_configured_peer_on_a_host_that_is_not_allowed_stops_the_start(settings):
    settings.ANVIL_PEER_ALLOWED_HOSTS = [".example.com"]
    assert configured_peers('[{"name": "eu", "url": "https://forge.eu.example.com", "token_env": "T"}]')
    with pytest.raises(ImproperlyConfigured, match=r"'10\.1\.2\.3', which is not in ANVIL_PEER_ALLOWED_HOSTS"):
        configured_peers('[{"name": "eu", "url": "http://10.1.2.3:8000", "token_env": "T"}]')
