"""The SSE reader (``anvil_client._http.EventStream``) against the ways a FORGE's bytes can arrive.

A FORGE sends the response head, the ``retry:`` hint and the releases it replays on connect at once, so one
read often brings them all; proxies and slow networks cut the stream anywhere. The reader must deliver every
event as soon as its last byte is in, whatever the reads were.

Most tests here script the server's side of a socket pair (the reader's transport, ``open_connection``) and
move in lockstep with the reader: a piece is written, the reader reads exactly that piece (the test waits
until the socket holds no unread byte), and then every event whose bytes are all in must have been delivered.
The last tests run the whole client against the stub FORGE writing as the real one does and byte by byte.
"""

from __future__ import annotations

import fcntl
import itertools
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from forge_stub import StubForge
from hypothesis import given, settings
from hypothesis import strategies as st

import anvil_client
from anvil_client import _http
from anvil_client._http import Event, EventStream

HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
HEAD_PLAIN = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: close\r\n\r\n"
REPLAYED = b'id: 7\nevent: release\ndata: {"set": "core", "version": 2}\n\n'
# (bytes, the event they end with or None); the first chunk is the FORGE's first write: retry + replay.
FRAMES: list[tuple[bytes, tuple[str, str, str | None] | None]] = [
    (b"retry: 250\n\n" + REPLAYED, ("release", '{"set": "core", "version": 2}', "7")),
    (b": heartbeat\r\n\r\n", None),
    (b'event: release\r\nid: 8\r\ndata: {"a":\r\ndata: 1}\r\n\r\n', ("release", '{"a":\n1}', "8")),
    (b"data: plain\n\n", ("message", "plain", None)),
    (b"data: last\r\r", ("message", "last", None)),  # a CR that nothing follows ends its line at the end
]


def chunked(frame: bytes) -> bytes:
    """``frame`` as two HTTP chunks, cut after its first CR when it has one (a chunk may end inside a line)."""
    cut = frame.find(b"\r") + 1 or len(frame) // 2
    return b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (frame[:cut], frame[cut:]) if part)


def wire(encoding: str) -> tuple[bytes, list[tuple[int, Event]], int]:
    """The stream's bytes, each event with the length of the prefix that completes it, and where the end is."""
    data = HEAD_CHUNKED if encoding == "chunked" else HEAD_PLAIN
    events: list[tuple[int, Event]] = []
    for frame, event in FRAMES:
        body = chunked(frame) if encoding == "chunked" else frame
        # The event is complete with its last data byte (the chunk's CRLF after it carries no data).
        complete = len(data) + len(body) - (2 if encoding == "chunked" else 0)
        data += body
        if event is not None:
            events.append((complete, Event(*event)))
    if encoding == "chunked":
        end = len(data) + len(b"0\r\n")
        data += b"0\r\n\r\n"
    else:
        end = len(data) + 1  # the close, after the last byte
    # The final CR-ended event has no following byte: only the end completes it.
    events[-1] = (end, events[-1][1])
    return data, events, end


def unread(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_read(sock: socket.socket) -> None:
    deadline = time.monotonic() + 5
    while unread(sock) and time.monotonic() < deadline:
        time.sleep(0.0005)


def drain(stream: EventStream, into: list[Event]) -> bool:
    """Poll until a poll brings nothing; True when the stream ended."""
    try:
        while True:
            before = len(into)
            for event in stream.poll(0.001):
                into.append(event)
            if len(into) == before:
                return False
    except EOFError:
        return True


def pieces(data: bytes, cuts: Iterable[int]) -> list[tuple[int, bytes]]:
    """``data`` cut at ``cuts``: (end offset, piece)."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(data)), len(data)]
    return [(end, data[start:end]) for start, end in itertools.pairwise(bounds)]


def replay_in_lockstep(encoding: str, cuts: Iterable[int]) -> None:
    """Write the stream in pieces, one read each; after each, the events it completed must have come."""
    data, events, end = wire(encoding)
    head_end = data.index(b"\r\n\r\n") + 4
    parts = pieces(data, cuts)
    if encoding == "plain":
        parts.append((end, b""))  # then the FORGE closes the connection
    server, client = socket.socketpair()
    head_parts = [(stop, piece) for stop, piece in parts if stop - len(piece) < head_end]
    body_parts = parts[len(head_parts) :]

    def write_head() -> None:
        # The reader is inside EventStream() reading the head: one piece per read.
        for _, piece in head_parts:
            server.sendall(piece)
            wait_read(client)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_http, "open_connection", lambda *args: client)
        writer = threading.Thread(target=write_head, daemon=True)
        writer.start()
        try:
            stream = EventStream("http://forge.test/api/v1/live/stream", token="t", last_event_id=None,
                                 connect_timeout=5)
            writer.join()
            got: list[Event] = []
            delivered = head_parts[-1][0]
            ended = drain(stream, got)
            for stop, piece in body_parts:
                assert (got, ended) == ([e for at, e in events if at <= delivered], delivered >= end), delivered
                if ended:
                    break
                if piece:
                    server.sendall(piece)
                else:
                    server.shutdown(socket.SHUT_WR)
                delivered = stop
                ended = drain(stream, got)
            assert (got, ended) == ([e for _, e in events], True), sorted(set(cuts))
            assert (stream.retry_ms, stream.last_event_id) == (250, "8")
        finally:
            server.close()
            client.close()


# ----------------------------------------------------------------------------- what the FORGE writes at once


@pytest.fixture
def one_write() -> Iterator[Callable[..., EventStream]]:
    """Open a stream whose FORGE wrote ``data`` in one write (and then closed the connection if ``close``)."""
    sockets: list[socket.socket] = []

    def open_stream(data: bytes, *, close: bool = False) -> EventStream:
        server, client = socket.socketpair()
        sockets.extend((server, client))
        server.sendall(data)
        if close:
            server.shutdown(socket.SHUT_WR)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_http, "open_connection", lambda *args: client)
            return EventStream("http://forge.test/api/v1/live/stream", token="t", last_event_id="6",
                               connect_timeout=5)

    yield open_stream
    for sock in sockets:
        sock.close()


@pytest.mark.parametrize("encoding", ["chunked", "plain"])
def test_a_release_in_the_same_read_as_the_head_comes_with_the_first_poll(
    encoding: str, one_write: Callable[..., EventStream]
) -> None:
    body = b"retry: 250\n\n" + REPLAYED
    data = HEAD_CHUNKED + chunked(body) if encoding == "chunked" else HEAD_PLAIN + body
    stream = one_write(data)  # and then nothing: the next heartbeat is 15 s away
    started = time.monotonic()
    events = list(stream.poll(1.0))
    assert [(e.event, e.id) for e in events] == [("release", "7")]
    assert time.monotonic() - started < 0.5
    assert (stream.retry_ms, stream.last_event_id) == (250, "7")


@pytest.mark.parametrize("encoding", ["chunked", "plain"])
def test_events_in_the_same_read_as_the_end_of_the_stream_come_before_the_end(
    encoding: str, one_write: Callable[..., EventStream]
) -> None:
    body = b"retry: 250\n\n" + REPLAYED + b"event: revoked\ndata: {}\n\n"
    if encoding == "chunked":
        stream = one_write(HEAD_CHUNKED + chunked(body) + b"0\r\n\r\n")
    else:
        stream = one_write(HEAD_PLAIN + body, close=True)
    got: list[Event] = []
    assert drain(stream, got)
    assert [(e.event, e.id) for e in got] == [("release", "7"), ("revoked", None)]


# ------------------------------------------------------------------------------- the stream cut anywhere


@pytest.mark.parametrize("encoding", ["chunked", "plain"])
def test_the_stream_cut_at_every_single_byte_boundary(encoding: str) -> None:
    data, _, _ = wire(encoding)
    for cut in range(1, len(data)):
        replay_in_lockstep(encoding, [cut])


@pytest.mark.parametrize("encoding", ["chunked", "plain"])
def test_the_stream_one_byte_per_read(encoding: str) -> None:
    data, _, _ = wire(encoding)
    replay_in_lockstep(encoding, range(1, len(data)))


@settings(max_examples=150, deadline=None)
@given(
    encoding=st.sampled_from(["chunked", "plain"]),
    cuts=st.sets(st.integers(min_value=1, max_value=len(wire("chunked")[0]) - 1), max_size=40),
)
def test_the_stream_cut_anywhere_delivers_each_event_once_its_bytes_are_in(encoding: str, cuts: set[int]) -> None:
    replay_in_lockstep(encoding, cuts)


# ----------------------------------------------------------------------- the client against the stub FORGE


MakeClient = Callable[..., anvil_client.Client]


def text(client: anvil_client.Client) -> str:
    return client.prompt("welcome.message", name="Ada")


def eventually(predicate: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(params=["forge", "bytes"])
def quiet_stub(request: pytest.FixtureRequest) -> Iterator[StubForge]:
    """A stub FORGE with a heartbeat far beyond the tests' patience: no heartbeat brings a stuck event in."""
    forge = StubForge(stream_writes=request.param, heartbeat=60).start()
    yield forge
    forge.stop()


def test_a_release_published_while_the_forge_was_down_is_taken_at_once_after_it_returns(
    quiet_stub: StubForge, make_client: MakeClient
) -> None:
    stub = quiet_stub
    stub.publish("core", 1)
    # Slow heartbeat and polling, as in production: only the replay on reconnect can bring version 2.
    client = make_client(stub, heartbeat_interval=60, poll_interval=600)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: client.status()["connected"], 5)
    port = stub.port
    stub.stop()
    assert eventually(lambda: not client.status()["connected"], 5)
    stub.publish("core", 2)
    stub.start(port)
    restarted = time.monotonic()
    assert eventually(lambda: text(client) == "Hello Ada (v2)", 3), client.status()
    assert time.monotonic() - restarted < 3


def test_releases_published_while_connected_are_all_taken(quiet_stub: StubForge, make_client: MakeClient) -> None:
    stub = quiet_stub
    stub.publish("core", 1)
    client = make_client(stub, heartbeat_interval=60, poll_interval=600)
    assert text(client) == "Hello Ada (v1)"
    assert eventually(lambda: stub.open_streams() == 1, 5)
    for version in range(2, 6):
        stub.publish("core", version)
        assert eventually(lambda v=version: text(client) == f"Hello Ada (v{v})", 3), client.status()
    stub.revoke()  # the last event and the end of the stream
    assert eventually(lambda: "revoked" in (client.status()["last_error"] or ""), 3), client.status()
