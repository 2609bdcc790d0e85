"""``/metrics``: the FORGE in the Prometheus text format (``prometheus_client``), behind a bearer token.

Off unless ``ANVIL_METRICS_TOKEN`` is set; then only ``Authorization: Bearer <token>`` is answered (anything
else: 404 when off, 401 otherwise). Served by :class:`Instrumented`, the outermost ASGI layer, which also times
every request (API and pages; the long-lived streams are counted, not timed) and starts the webhook drainer with
the server's lifespan. With metrics off, requests pass through untouched (nothing counted or timed): the LIVE
API's fast paths pay one string comparison.

Two kinds of series:

* **per process** (labelled ``process="<host>:<pid>"``): request latencies, check-ins, open streams,
  publish-to-acknowledgement times, webhook deliveries and failures. With several FORGE processes, scrape each
  process (its own port or pod); ``sum without (process)`` adds them up. Scraped through a load balancer, each
  scrape reaches one process and the others' series go stale: scrape the processes, not the balancer.
* **from the database** (no ``process`` label, the same from every process): publishes, instances by state,
  queued webhook deliveries by state. Read at each scrape with a few ``COUNT`` queries.
"""

from __future__ import annotations

import hmac
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, models, transaction
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

PATH = "/metrics"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "anvil_http_request_duration_seconds",
    "Time to answer a request (to the end of the response body), by kind: api, page, live (LIVE API).",
    ["process", "kind", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
CHECKINS = Counter("anvil_checkins", "Check-ins received from LIVE instances.", ["process"], registry=REGISTRY)
STREAMS_OPENED = Counter("anvil_streams_opened", "LIVE streams opened.", ["process"], registry=REGISTRY)
ACK_SECONDS = Histogram(
    "anvil_publish_to_acknowledgement_seconds",
    "Time from a publish to each instance's acknowledgement of it.",
    ["process"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "anvil_webhook_deliveries", "Webhook delivery attempts, by result (ok, failed).", ["process", "result"],
    registry=REGISTRY,
)
WEBHOOK_GAVE_UP = Counter(
    "anvil_webhook_deliveries_given_up", "Webhook deliveries given up after the retry window.", ["process"],
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge("anvil_open_streams", "LIVE streams open on this process.", ["process"], registry=REGISTRY)
OPEN_STREAMS.labels(PROCESS).set_function(lambda: _open_streams())
for _result in ("ok", "failed"):
    WEBHOOK_DELIVERIES.labels(PROCESS, _result)
WEBHOOK_GAVE_UP.labels(PROCESS)
CHECKINS.labels(PROCESS)
STREAMS_OPENED.labels(PROCESS)
ACK_SECONDS.labels(PROCESS)


def _open_streams() -> int:
    from anvil_forge.distribution.broadcast import broadcaster

    return sum(len(subscribers) for subscribers in list(broadcaster.by_environment.values()))


class DatabaseCollector(Collector):
    """Series read from the database at each scrape: the same whichever process answers."""

    def describe(self) -> list[Any]:  # registering must not query the database (it happens at import)
        return []

    def collect(self) -> Iterator[Any]:
        from anvil_forge.distribution.models import LiveProcess, Release
        from anvil_forge.webhooks.models import Delivery

        close_old_connections()
        publishes = CounterMetricFamily("anvil_publishes", "Releases made (publishes and rollbacks), all processes.")
        publishes.add_metric([], Release.objects.count())
        yield publishes
        now = timezone.now()
        instances = GaugeMetricFamily(
            "anvil_instances", "LIVE client processes by state: accepting, frozen (live), stale (aged out <1 day).",
            labels=["state"],
        )
        live = dict(
            LiveProcess.objects.filter(expires_at__gt=now).values_list("mode").annotate(n=models.Count("pk"))
        )
        for mode in ("accepting", "frozen"):
            instances.add_metric([mode], live.get(mode, 0))
        stale = LiveProcess.objects.filter(expires_at__lte=now, expires_at__gt=now - timedelta(days=1)).count()
        instances.add_metric(["stale"], stale)
        yield instances
        queue = GaugeMetricFamily("anvil_webhook_queue", "Webhook deliveries by state.", labels=["state"])
        counts = dict(Delivery.objects.values_list("state").annotate(n=models.Count("pk")))
        for state in ("pending", "delivered", "failed"):
            queue.add_metric([state], counts.get(state, 0))
        yield queue


REGISTRY.register(DatabaseCollector())


# -- what the rest of the FORGE reports -------------------------------------------------------------------------


def audit_event_recorded(event: Any, obj: Any) -> None:
    """Called by ``audit_record`` in the change's transaction: an acknowledgement's delay is counted after commit."""
    if event.action == "release.acknowledge" and getattr(obj, "published_at", None) is not None:
        delay = max((event.created_at - obj.published_at).total_seconds(), 0.0)
        transaction.on_commit(lambda: ACK_SECONDS.labels(PROCESS).observe(delay))


def webhook_delivery(*, ok: bool, gave_up: bool) -> None:
    WEBHOOK_DELIVERIES.labels(PROCESS, "ok" if ok else "failed").inc()
    if gave_up:
        WEBHOOK_GAVE_UP.labels(PROCESS).inc()


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def authorised(headers: list[tuple[bytes, bytes]]) -> int:
    """200 when the request carries the metrics token, 401 when it does not, 404 when metrics are off."""
    token = settings.ANVIL_METRICS_TOKEN
    if not token:
        return 404
    given = next((value for name, value in headers if name.lower() == b"authorization"), b"")
    scheme, _, credential = given.decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode()):
        return 200
    return 401


# -- the ASGI layer ----------------------------------------------------------------------------------------------


def _kind(path: str, stream_path: str, checkin_path: str) -> str | None:
    if path == stream_path or path.endswith("/live-events") or path.startswith(settings.STATIC_URL):
        return None  # streams never end by themselves; static files are not the FORGE's work
    if path == checkin_path or path.startswith("/api/v1/live/"):
        return "live"
    if path.startswith("/api/"):
        return "api"
    return "page"


class Instrumented:
    """Outermost ASGI layer: ``/metrics``, request timing, and the webhook drainer started with the lifespan."""

    def __init__(self, app: Any) -> None:
        from anvil_forge.distribution import stream
        from anvil_forge.distribution.checkin_api import PATH as CHECKIN_PATH

        self.app = app
        self.stream_path = stream.PATH
        self.checkin_path = CHECKIN_PATH

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == PATH:
            await self._metrics(scope, send)
            return
        if not settings.ANVIL_METRICS_TOKEN:  # metrics off: nothing counted, nothing timed, nothing in the way
            await self.app(scope, receive, send)
            return
        if path == self.checkin_path:
            CHECKINS.labels(PROCESS).inc()
        elif path == self.stream_path:
            STREAMS_OPENED.labels(PROCESS).inc()
        kind = _kind(path, self.stream_path, self.checkin_path)
        if kind is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def observed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                REQUEST_SECONDS.labels(PROCESS, kind, scope.get("method", ""), f"{status[0] // 100}xx").observe(
                    time.perf_counter() - started
                )

        # Where a fast path writes to the transport itself (stream.direct_writer), it looks through ``send``;
        # requests timed here are never streams, so wrapping ``send`` costs them nothing.
        await self.app(scope, receive, observed_send)

    def _lifespan(self, receive: Any) -> Any:
        async def wrapped() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                from anvil_forge.webhooks import drain

                drain.start()
            elif message["type"] == "lifespan.shutdown":
                from anvil_forge.webhooks import drain

                await sync_to_async(drain.stop, thread_sensitive=False)()
            return message

        return wrapped

    async def _metrics(self, scope: Any, send: Any) -> None:
        status = authorised(scope.get("headers", []))
        if status != 200:
            body = b"Not Found\n" if status == 404 else b"Unauthorized\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            if status == 401:
                headers.append((b"www-authenticate", b'Bearer realm="metrics"'))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        body = await sync_to_async(exposition, thread_sensitive=False)()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [  # the 0.0.4 text format: what every Prometheus reads
                    (b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
