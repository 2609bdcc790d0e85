"""HTTP to the FORGE with the standard library only: JSON requests (http.client) and an SSE reader.

The SSE reader works on a raw socket with a short receive timeout, so the sync thread wakes a few times a
second (to see host state changes, check in, or stop) without losing bytes: buffered file objects over a
socket cannot be read again after a timeout, a raw ``recv`` can.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from anvil_client._exceptions import AnvilError

USER_AGENT = "anvil-client/0.1.0 (python)"
MAX_JSON_BYTES = 80 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_EVENT_BYTES = 80 * 1024 * 1024


class HTTPFailure(AnvilError):
    """The FORGE answered with an error status, or the connection failed (``status`` is None then)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HTTPFailure(f"the FORGE sent invalid JSON: {exc}", status=self.status) from exc


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname or "", port, path


def request(
    method: str,
    url: str,
    *,
    token: str,
    timeout: float,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One request; ``body`` is sent as JSON. Raises :class:`HTTPFailure` when the connection fails.

    Any status is returned (the caller decides what 304 or 404 mean), except 401 which always raises.
    """
    scheme, host, port, path = _split(url)
    send_headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        send_headers["Content-Type"] = "application/json"
    send_headers.update(headers or {})
    try:
        sock = open_connection(scheme, host, port, timeout)
    except OSError as exc:
        raise HTTPFailure(f"cannot reach the FORGE at {scheme}://{host}:{port}: {exc or type(exc).__name__}") from exc
    # Imported only once a FORGE accepted the connection: a client starting while its FORGE is down (the
    # start-up benchmark) does not pay for http.client before its first prompt.
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock  # already connected (and TLS-wrapped for https)
    try:
        conn.request(method, path, body=payload, headers=send_headers)
        response = conn.getresponse()
        data = response.read(MAX_JSON_BYTES + 1)
        result = Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        raise HTTPFailure(f"cannot reach the FORGE at {scheme}://{host}:{port}: {exc or type(exc).__name__}") from exc
    finally:
        conn.close()
    if len(result.body) > MAX_JSON_BYTES:
        raise HTTPFailure(f"the FORGE's answer to {path} is too large", status=result.status)
    if result.status == 401:
        raise HTTPFailure("the FORGE refused the token (401): it is wrong, expired or revoked", status=401)
    return result


def open_connection(scheme: str, host: str, port: int, timeout: float) -> socket.socket:
    """A socket connected to the FORGE, TLS-wrapped (certificate and host name checked) for ``https``.

    Every socket made here is closed in a forked child (:func:`close_inherited_sockets`): a fork can happen
    while the parent's sync thread is in the middle of a request, and the child must not keep that socket.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    _OPEN_SOCKETS.add(sock)
    if scheme != "https":
        return sock
    try:
        import ssl

        wrapped = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    _OPEN_SOCKETS.add(wrapped)
    return wrapped


def close_inherited_sockets() -> None:
    """In a forked child: close this process's copies of every socket to the FORGE (never ``shutdown()``,
    which would end the parent's connection too)."""
    for sock in list(_OPEN_SOCKETS):
        # detach() then os.close(): close() leaves the descriptor open while a reader made by makefile() (an
        # HTTP response the parent's thread was reading) still refers to it.
        with contextlib.suppress(OSError, ValueError):
            fd = sock.detach()
            if fd >= 0:
                os.close(fd)
    _OPEN_SOCKETS.clear()


_OPEN_SOCKETS: weakref.WeakSet[socket.socket] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=close_inherited_sockets)


def retry_after(headers: dict[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("retry-after", "")))
    except ValueError:
        return None


@dataclass(slots=True)
class Event:
    event: str
    data: str
    id: str | None


class EventStream:
    """One Server-Sent Events connection (``text/event-stream``), HTTP/1.1, chunked or not."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        last_event_id: str | None,
        connect_timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        scheme, host, port, path = _split(url)
        self.retry_ms: int | None = None
        self.last_event_id = last_event_id
        self.last_activity = time.monotonic()
        self._buffer = b""
        self._chunked = False
        self._chunk_left = 0  # bytes left in the current chunk; -1 while reading a size line
        self._raw = b""
        self._event_type = ""
        self._data: list[str] = []
        self._pending_id: str | None = None
        self._eof = False  # the chunked body's last chunk came
        self._closed = False  # the FORGE closed the connection
        sock = open_connection(scheme, host, port, connect_timeout)
        try:
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: {host}:{port}",
                f"Authorization: Bearer {token}",
                "Accept: text/event-stream",
                "Cache-Control: no-cache",
                f"User-Agent: {USER_AGENT}",
            ]
            if last_event_id:
                lines.append(f"Last-Event-ID: {last_event_id}")
            for name, value in (headers or {}).items():
                if "\r" not in value and "\n" not in value:
                    lines.append(f"{name}: {value}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self._sock = sock
            self._read_head(connect_timeout)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def close_inherited(self) -> None:
        """In a forked child: close this process's copy of the socket, leaving the parent's stream open."""
        with contextlib.suppress(OSError):
            self._sock.close()

    def _recv(self, timeout: float) -> bytes | None:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return None
        if data:
            self.last_activity = time.monotonic()
        return data

    def _read_head(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        data = b""
        while b"\r\n\r\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HTTPFailure("the FORGE did not answer the stream request in time")
            chunk = self._recv(left)
            if chunk == b"":
                raise HTTPFailure("the FORGE closed the stream before answering")
            data += chunk or b""
            if len(data) > MAX_HEADER_BYTES:
                raise HTTPFailure("the FORGE's stream headers are too large")
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError) as exc:
            raise HTTPFailure(f"the FORGE sent a bad status line {status_line!r}") from exc
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 200:
            message = {401: "the FORGE refused the token (401): it is wrong, expired or revoked"}.get(
                status, f"the FORGE answered the stream request with {status}"
            )
            raise HTTPFailure(message, status=status, retry_after=retry_after(headers))
        if not headers.get("content-type", "").startswith("text/event-stream"):
            raise HTTPFailure(f"the FORGE's stream is {headers.get('content-type')!r}, not text/event-stream")
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunk_left = -1
        self._feed_raw(rest)

    def _feed_raw(self, data: bytes) -> None:
        if not self._chunked:
            self._buffer += data
            return
        self._raw += data
        while self._raw:
            if self._chunk_left == -1:
                line, sep, rest = self._raw.partition(b"\r\n")
                if not sep:
                    if len(self._raw) > 1024:
                        raise HTTPFailure("bad chunked encoding in the stream")
                    return
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError as exc:
                    raise HTTPFailure("bad chunked encoding in the stream") from exc
                self._raw = rest
                if size == 0:
                    self._eof = True
                    self._raw = b""
                    return
                self._chunk_left = size
            elif self._chunk_left == 0:  # the CRLF after a chunk
                if len(self._raw) < 2:
                    return
                self._raw = self._raw[2:]
                self._chunk_left = -1
            else:
                take = self._raw[: self._chunk_left]
                self._buffer += take
                self._raw = self._raw[len(take) :]
                self._chunk_left -= len(take)
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise HTTPFailure("an event in the stream is too large")

    def poll(self, tick: float) -> Iterator[Event]:
        """Yield the complete events already received; when there were none, wait up to ``tick`` seconds for
        data and yield the complete events it finished.

        Raises EOFError when the FORGE ended the stream or closed the connection, after yielding the events
        that came before the end.
        """
        # The read that finished the response head often carries the `retry:` line and the replayed releases
        # too (the FORGE sends them together): they are in the buffer already and must not wait for more data.
        buffered = False
        for event in self._parse_lines():
            buffered = True
            yield event
        if not buffered and not (self._eof or self._closed):
            data = self._recv(tick)
            if data is None:
                return
            if data == b"":
                self._closed = True
            else:
                self._feed_raw(data)
            yield from self._parse_lines()
        if self._eof or self._closed:
            if self._buffer.endswith(b"\r"):  # a CR ends its line when nothing can follow it
                self._buffer += b"\n"
                yield from self._parse_lines()
            raise EOFError("the FORGE ended the stream" if self._eof else "the FORGE closed the connection")

    def _parse_lines(self) -> Iterator[Event]:
        while True:
            # Lines end with CRLF, LF or CR (a CR at the very end may be followed by LF: wait for more).
            index_n = self._buffer.find(b"\n")
            index_r = self._buffer.find(b"\r")
            if index_n == -1 and (index_r == -1 or index_r == len(self._buffer) - 1):
                return
            if index_r != -1 and (index_n == -1 or index_r < index_n):
                line = self._buffer[:index_r]
                skip = 2 if self._buffer[index_r + 1 : index_r + 2] == b"\n" else 1
                self._buffer = self._buffer[index_r + skip :]
            else:
                line = self._buffer[:index_n]
                self._buffer = self._buffer[index_n + 1 :]
            event = self._line(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event

    def _line(self, line: str) -> Event | None:
        if line == "":
            if self._pending_id is not None:
                self.last_event_id = self._pending_id
            if not self._data:
                self._event_type = ""
                return None
            event = Event(self._event_type or "message", "\n".join(self._data), self._pending_id)
            self._event_type, self._data, self._pending_id = "", [], None
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event_type = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\x00" not in value:
            self._pending_id = value
        elif field == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None
