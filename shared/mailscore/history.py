"""Sender history for the scorer: cached, deadline-bound, never blocking a verdict.

``HistorySource.lookup`` returns a ``Lookup`` whose ``snapshot`` is None when
the history could not be had in time; the scorer then scores without it
and marks the verdict degraded with ``status`` as the reason. The Bigtable
read gets what is left of the message's latency budget as its timeout.
After a few consecutive failures a breaker stops trying for a short
cool-down (so a dead Bigtable costs nothing per message), then lets one
probe through; the first success closes it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailscore.cache import BoundedCache
from mailscore.errors import TransientError
from mailscore.profiles import Snapshot

DEFAULT_MIN_TIMEOUT_S = 0.025


@dataclass(frozen=True)
class Lookup:
    snapshot: Snapshot | None
    status: str  # "cache_hit", "read", "timeout", "error", "circuit_open", "budget_exhausted"
    elapsed_ms: float


class Breaker:
    def __init__(self, failures: int = 3, cooldown_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._consecutive = 0
        self._open_until = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._consecutive < self.failures:
                return True
            if self._clock() >= self._open_until and not self._probing:
                self._probing = True  # half-open: one probe at a time
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._probing = False
            if self._consecutive >= self.failures:
                self._open_until = self._clock() + self.cooldown_s

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._consecutive >= self.failures


class HistorySource:
    """Profile reads through a bounded cache, within each message's deadline."""

    def __init__(self, read: Callable[[str, float], Snapshot], cache: BoundedCache[Snapshot] | None = None,
                 breaker: Breaker | None = None, min_timeout_s: float = DEFAULT_MIN_TIMEOUT_S,
                 read_many: Callable[[list[str], float], dict[str, Snapshot]] | None = None) -> None:
        self._read = read
        self._read_many = read_many
        # A message whose budget is already spent (it waited in a backlog) still
        # gets one short read: skipping it would not make its verdict on time,
        # only worse. ``min_timeout_s`` of 0 skips the read instead.
        self.min_timeout_s = min_timeout_s
        self.cache = cache
        self.breaker = breaker or Breaker()

    def lookup(self, key: str, deadline: float) -> Lookup:
        """History for ``key`` before ``deadline`` (a ``time.monotonic()`` instant)."""
        started = time.monotonic()

        def load() -> Snapshot:
            remaining = max(deadline - time.monotonic(), self.min_timeout_s)
            if remaining <= 0.001:
                raise _Skip("budget_exhausted")
            if not self.breaker.allow():
                raise _Skip("circuit_open")
            try:
                snapshot = self._read(key, remaining)
            except TransientError:
                self.breaker.failure()
                raise
            self.breaker.success()
            return snapshot

        try:
            if self.cache is not None:
                wait = max(deadline - time.monotonic(), self.min_timeout_s, 0.0)
                snapshot, hit = self.cache.get(key, load, wait_timeout=wait)
            else:
                snapshot, hit = load(), False
        except _Skip as skip:
            return Lookup(None, skip.status, _ms(started))
        except TransientError as exc:
            return Lookup(None, _failure_status(exc), _ms(started))
        return Lookup(snapshot, "cache_hit" if hit else "read", _ms(started))


    def lookup_many(self, keys: list[str], deadline: float) -> dict[str, Lookup]:
        """Like ``lookup`` for several keys: cache hits, then one multi-row read for the rest."""
        unique = list(dict.fromkeys(keys))
        if len(unique) == 1 or self._read_many is None:
            return {key: self.lookup(key, deadline) for key in unique}
        started = time.monotonic()
        out: dict[str, Lookup] = {}
        missing = []
        for key in unique:
            cached = self.cache.lookup(key) if self.cache is not None else None
            if cached is not None:
                out[key] = Lookup(cached, "cache_hit", 0.0)
            else:
                missing.append(key)
        if not missing:
            return out
        remaining = max(deadline - time.monotonic(), self.min_timeout_s)
        status = None
        if remaining <= 0.001:
            status = "budget_exhausted"
        elif not self.breaker.allow():
            status = "circuit_open"
        else:
            try:
                found = self._read_many(missing, remaining)
            except TransientError as exc:
                self.breaker.failure()
                status = _failure_status(exc)
            else:
                self.breaker.success()
                for key in missing:
                    if self.cache is not None:
                        self.cache.put(key, found[key])
                    out[key] = Lookup(found[key], "read", _ms(started))
                return out
        for key in missing:
            out[key] = Lookup(None, status, _ms(started))
        return out


def _failure_status(exc: TransientError) -> str:
    """``timeout`` when the read ran out of time, else ``error``."""
    cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
    return "timeout" if ("Deadline" in cause or "Timeout" in cause or "timed out" in str(exc)) else "error"


class _Skip(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000.0, 3)
