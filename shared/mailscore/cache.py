"""A bounded, thread-safe, per-instance cache for profile reads.

Bounded by entries (least recently used goes first) and by age (entries
older than the TTL are reloaded). Misses are cached too: an unknown sender
is a result, and most phishing senders are unknown. Concurrent lookups of
one key are coalesced: the first caller loads, the others wait for its
result (each within its own time budget), so a burst from one sender costs
one Bigtable read. Load errors are not cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mailscore.errors import TransientError

V = TypeVar("V")


class _Flight:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    errors: int = 0
    evictions: int = 0
    size: int = 0

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "coalesced": self.coalesced, "errors": self.errors,
                "evictions": self.evictions, "size": self.size, "hit_ratio": round(self.hit_ratio, 4)}


class BoundedCache(Generic[V]):
    """LRU + TTL cache with single-flight loading. ``max_entries`` of 0 disables it."""

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> CacheStats:
        with self._lock:
            self._stats.size = len(self._entries)
            return CacheStats(**vars(self._stats))

    def peek(self, key: str) -> V | None:
        """The fresh cached value, or None (counts as neither hit nor miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() - entry[0] <= self.ttl:
                return entry[1]
            return None

    def lookup(self, key: str) -> V | None:
        """The fresh cached value (a hit) or None (a miss); for callers that load in bulk."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() - entry[0] <= self.ttl:
                self._entries.move_to_end(key)
                self._stats.hits += 1
                return entry[1]
            self._stats.misses += 1
            return None

    def get(self, key: str, load: Callable[[], V], wait_timeout: float | None = None) -> tuple[V, bool]:
        """``(value, hit)``; ``load`` runs at most once at a time per key.

        A caller that finds a load in flight waits for it up to
        ``wait_timeout`` seconds, then gets TransientError.
        """
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None and now - entry[0] <= self.ttl:
                self._entries.move_to_end(key)
                self._stats.hits += 1
                return entry[1], True
            self._stats.misses += 1
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                self._stats.coalesced += 1
        if not leader:
            if not flight.done.wait(wait_timeout):
                raise TransientError("timed out waiting for a coalesced profile read")
            if flight.error is not None:
                raise flight.error
            return flight.value, False
        try:
            value = load()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                self._stats.errors += 1
                del self._flights[key]
            flight.done.set()
            raise
        flight.value = value
        with self._lock:
            del self._flights[key]
            self.put_locked(key, value)
        flight.done.set()
        return value, False

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self.put_locked(key, value)

    def put_locked(self, key: str, value: V) -> None:
        if self.max_entries <= 0:
            return
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._stats.evictions += 1
