"""How often page views may read a peer: a per-peer budget, and the last answers to show past it.

Anyone who may view an organisation (viewers included) can open the pages that read its peers and start the
connection test, and each would otherwise send requests to the peer: reloading a page must not turn the FORGE
into a tool for hammering another server. These reads of one peer start at most
``ANVIL_PEER_PAGE_READS_PER_MINUTE`` live reads a minute (a bucket of that many, refilled evenly over the
minute); past that, a page shows the last answer to the same read (:class:`AnswerCache`), or the state recorded
on the peer, the connected project or the copied set. Both are per process: with several FORGE processes, each
has its own budget.

Changes (adding a peer, connecting a project, copying a version) and the ``anvil-forge`` command are not
counted: they are taken by editors and above or at the console, and say at once what the peer answered.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

MAX_ANSWERS = 512


class PeerReadBudget:
    """A token bucket per peer: ``take(key)`` says whether a page view may read the peer now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: Hashable) -> bool:
        per_minute = max(1, int(settings.ANVIL_PEER_PAGE_READS_PER_MINUTE))
        now = time.monotonic()
        with self._lock:
            tokens, when = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - when) * per_minute / 60.0)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > 10_000:  # peers come and go: forget the oldest
                self._buckets.pop(next(iter(self._buckets)))
            return allowed

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()


@dataclass(frozen=True, slots=True)
class Answer:
    """What a live read gave: its result, or the error it raised."""

    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class AnswerCache:
    """The last answers of live reads, by (peer, read), the most recent ``MAX_ANSWERS`` of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()

    def get(self, key: Hashable) -> Answer | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
            return answer

    def put(self, key: Hashable, answer: Answer) -> None:
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > MAX_ANSWERS:
                self._answers.popitem(last=False)

    def reset(self) -> None:
        with self._lock:
            self._answers.clear()


read_budget = PeerReadBudget()
answers = AnswerCache()
