"""The peer HTTP client: a slow, down, garbage-sending or oversized peer gives a clear PeerError, quickly."""

import json
import logging
import time

import pytest

from anvil_client.bundle import build_bundle
from anvil_forge.peering.client import PeerClient, PeerError
from forge.tests.peering.stub_peer import drip, endless_chunked, page, reply, slow
from tests.forge_process import free_port

TOKEN = "anvil_peer_" + "T0ken" * 9


def client(url: str, **kwargs) -> PeerClient:
    return PeerClient(url, TOKEN, name="b", **kwargs)


def make_bundle(**overrides):
    fields = dict(
        forge="http://b", organisation="acme", project="support-bot", environment="production", set_slug="core",
        version=2, approval="approved", created_at="2026-11-25T10:00:00Z",
        prompts=[{"id": "welcome.message", "template": "Hello {{ name }}!"}],
    )
    fields.update(overrides)
    return build_bundle(**fields)


def test_projects_page_is_read_with_the_bearer_token(peer_server):
    peer_server.json("/api/v1/peer/projects", page([{"organisation": "acme", "project": "support-bot"}]))
    result = client(peer_server.url).projects()
    assert result.items == [{"organisation": "acme", "project": "support-bot"}]
    assert result.total == 1 and result.next_page is None
    assert peer_server.requests[0]["authorization"] == f"Bearer {TOKEN}"
    assert peer_server.requests[0]["path"] == "/api/v1/peer/projects?page=1&per_page=50"


def test_slow_peer_is_given_up_at_the_deadline_as_one_that_cannot_be_reached(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = slow(5)
    started = time.monotonic()
    with pytest.raises(PeerError, match=r"Could not reach the peer b: .*no answer within 0\.5 s") as caught:
        client(peer_server.url, timeout=0.5).projects()
    assert caught.value.kind == "unreachable"
    assert time.monotonic() - started < 2


def test_peer_dripping_bytes_is_cut_at_the_total_deadline_not_per_read(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = drip(total_seconds=6, every=0.1)
    started = time.monotonic()
    with pytest.raises(PeerError) as caught:
        client(peer_server.url, timeout=0.8).projects()
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 2


def test_declared_oversized_answer_is_refused_before_reading(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = reply(b"[" + b"1," * 600_000 + b"1]")
    with pytest.raises(PeerError, match="more than 1024 KB") as caught:
        client(peer_server.url, max_bytes=1024 * 1024).projects()
    assert caught.value.kind == "too_large"


def test_endless_answer_without_length_is_cut_at_the_size_limit(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = endless_chunked()
    started = time.monotonic()
    with pytest.raises(PeerError) as caught:
        client(peer_server.url, max_bytes=512 * 1024).projects()
    assert caught.value.kind == "too_large"
    assert time.monotonic() - started < 3


def test_unreachable_peer_says_so():
    with pytest.raises(PeerError, match=r"Could not reach the peer b") as caught:
        client(f"http://127.0.0.1:{free_port()}").projects()
    assert caught.value.kind == "unreachable"
    assert not caught.value.reachable


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<html>hello</html>", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (json.dumps([1, 2]).encode(), "not a page"),
        (json.dumps({"items": "x", "page": 1, "per_page": 1, "total": 1, "next_page": None}).encode(), "peer API"),
        (json.dumps({"items": [], "page": 1, "per_page": 1, "total": -1, "next_page": None}).encode(), "peer API"),
    ],
)
def test_garbage_answers_are_refused_with_a_clear_message(peer_server, body, message):
    peer_server.routes["/api/v1/peer/projects"] = reply(body)
    with pytest.raises(PeerError, match=message) as caught:
        client(peer_server.url).projects()
    assert caught.value.kind == "garbage"


def test_refused_token_is_reported_as_such(peer_server):
    peer_server.json("/api/v1/peer/projects", {"error": "invalid token"}, status=401)
    with pytest.raises(PeerError, match="refused the token") as caught:
        client(peer_server.url).projects()
    assert caught.value.kind == "token_refused"


def test_redirect_is_not_followed_so_the_token_never_leaves_for_another_host(peer_server):
    peer_server.routes["/api/v1/peer/projects"] = reply(b"", status=302, headers={"Location": "http://evil.test/x"})
    with pytest.raises(PeerError, match="redirect") as caught:
        client(peer_server.url).projects()
    assert caught.value.kind == "http"
    assert len(peer_server.requests) == 1


def test_server_error_is_shown_as_its_status_not_its_message(peer_server):
    peer_server.json("/api/v1/peer/projects", {"error": "database unavailable"}, status=503)
    with pytest.raises(PeerError, match=r"answered 503 \(Service Unavailable\)") as caught:
        client(peer_server.url).projects()
    assert "database" not in caught.value.message


def test_verified_bundle_is_returned(peer_server):
    bundle = make_bundle()
    peer_server.json("/api/v1/peer/projects/acme/support-bot/sets/core/versions/2", bundle)
    loaded = client(peer_server.url).bundle("acme", "support-bot", "core", 2)
    assert loaded.content_digest == bundle["content_digest"]
    assert loaded.prompts[0].id == "welcome.message"


def test_bundle_with_a_wrong_digest_is_refused(peer_server):
    bundle = make_bundle()
    bundle["prompts"][0]["template"] = "Hello {{ name }}, tampered"
    peer_server.json("/api/v1/peer/projects/acme/support-bot/sets/core/versions/2", bundle)
    with pytest.raises(PeerError, match=r"failed verification.*digest") as caught:
        client(peer_server.url).bundle("acme", "support-bot", "core", 2)
    assert caught.value.kind == "garbage"


def test_bundle_of_another_version_than_asked_is_refused(peer_server):
    peer_server.json("/api/v1/peer/projects/acme/support-bot/sets/core/versions/2", make_bundle(version=1))
    with pytest.raises(PeerError, match="when asked for acme/support-bot/core v2"):
        client(peer_server.url).bundle("acme", "support-bot", "core", 2)


def test_bundle_not_approved_is_refused(peer_server):
    peer_server.json("/api/v1/peer/projects/acme/support-bot/sets/core/versions/2", make_bundle(approval="in_review"))
    with pytest.raises(PeerError, match="not approved"):
        client(peer_server.url).bundle("acme", "support-bot", "core", 2)


def test_token_never_appears_in_errors_logs_or_repr(peer_server, caplog):
    caplog.set_level(logging.DEBUG)
    peer_server.json("/api/v1/peer/projects", {"error": "invalid token"}, status=401)
    peer = client(peer_server.url)
    messages = [repr(peer)]
    for url in (peer_server.url, f"http://127.0.0.1:{free_port()}"):
        with pytest.raises(PeerError) as caught:
            client(url).projects()
        messages += [caught.value.message, str(caught.value.extra)]
    assert not any(TOKEN in text for text in [*messages, caplog.text])


@pytest.mark.parametrize(
    "item",
    [{"set": "core", "latest_version": "2"}, {"set": "../../x", "latest_version": 2}, {"latest_version": 2},
     {"set": "core", "latest_version": 0}, {"set": "core", "latest_version": True}],
)
def test_set_items_that_links_cannot_carry_are_refused(peer_server, item):
    peer_server.json("/api/v1/peer/projects/acme/support-bot/sets", page([item]))
    with pytest.raises(PeerError, match="malformed") as caught:
        client(peer_server.url).sets("acme", "support-bot")
    assert caught.value.kind == "garbage"
