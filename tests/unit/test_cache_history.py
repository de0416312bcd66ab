"""The bounded profile cache, the breaker and the history lookup policy (pure logic)."""

from __future__ import annotations

import random
import threading
import time

import pytest

from mailscore.cache import BoundedCache
from mailscore.errors import TransientError
from mailscore.features import History
from mailscore.history import Breaker, HistorySource
from mailscore.profiles import HLL_REGISTERS, Snapshot, Update, apply_update, decode_int, hll_add, hll_estimate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_is_bounded_by_entries_under_many_keys():
    cache: BoundedCache[int] = BoundedCache(max_entries=1000, ttl_seconds=60)
    for i in range(200_000):
        cache.get(f"k{i}", lambda i=i: i)
    assert len(cache) == 1000
    stats = cache.stats()
    assert stats.evictions == 199_000 and stats.size == 1000
    assert cache.get("k199999", lambda: -1) == (199_999, True)  # most recent kept
    assert cache.get("k0", lambda: -1) == (-1, False)  # oldest evicted


def test_cache_ttl_and_cached_misses():
    clock = Clock()
    cache: BoundedCache[Snapshot] = BoundedCache(10, ttl_seconds=5, clock=clock)
    loads = []
    empty = Snapshot(History(), None)

    def load():
        loads.append(1)
        return empty

    assert cache.get("unknown", load) == (empty, False)
    assert cache.get("unknown", load) == (empty, True)  # a miss is cached too
    clock.now = 6
    assert cache.get("unknown", load) == (empty, False)
    assert len(loads) == 2
    assert cache.stats().hit_ratio == pytest.approx(1 / 3)


def test_concurrent_lookups_of_one_key_are_coalesced():
    cache: BoundedCache[int] = BoundedCache(10, 60)
    release = threading.Event()
    calls = []

    def slow_load():
        calls.append(1)
        release.wait(5)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow_load, wait_timeout=5)[0])) for _ in range(8)]
    for t in threads:
        t.start()
    while cache.stats().coalesced < 7:  # wait until all followers are parked on the flight
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert calls == [1] and results == [42] * 8


def test_load_errors_are_not_cached():
    cache: BoundedCache[int] = BoundedCache(10, 60)
    with pytest.raises(TransientError):
        cache.get("k", lambda: (_ for _ in ()).throw(TransientError("down")))
    assert cache.get("k", lambda: 7) == (7, False)


def test_breaker_opens_then_probes():
    clock = Clock()
    breaker = Breaker(failures=2, cooldown_s=1.0, clock=clock)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow() and breaker.is_open
    clock.now = 1.5
    assert breaker.allow()  # one probe
    assert not breaker.allow()  # only one at a time
    breaker.success()
    assert breaker.allow() and not breaker.is_open


def test_history_lookup_statuses():
    def failing(key, budget):
        raise TransientError("bigtable read failed: ServiceUnavailable")

    source = HistorySource(failing, None, Breaker(failures=2, cooldown_s=60))
    far = time.monotonic() + 10
    assert source.lookup("k", far).status == "error"
    assert source.lookup("k", far).status == "error"
    assert source.lookup("k", far).status == "circuit_open"
    ok = HistorySource(lambda key, budget: Snapshot(History(msg_count=3), 1.0), None)
    assert ok.lookup("k", far).snapshot.history.msg_count == 3
    assert ok.lookup("k", time.monotonic() - 1).status == "read"  # late: one short read
    strict = HistorySource(lambda key, budget: Snapshot(History(), None), None, min_timeout_s=0.0)
    assert strict.lookup("k", time.monotonic() - 1).status == "budget_exhausted"
    budgets = []
    timed = HistorySource(lambda key, budget: budgets.append(budget) or Snapshot(History(), None), None, min_timeout_s=0.01)
    timed.lookup("k", time.monotonic() + 0.15)
    timed.lookup("k", time.monotonic() - 5)
    assert 0.01 < budgets[0] <= 0.15  # the read gets what is left of the budget
    assert budgets[1] == 0.01  # a late message gets the floor, no more


def test_hll_error_is_within_bounds():
    rng = random.Random(1)
    for n in (5, 50, 500, 20_000):
        registers = bytearray(HLL_REGISTERS)
        for i in range(n):
            hll_add(registers, f"{rng.getrandbits(64):016x}")
        estimate = hll_estimate(bytes(registers))
        assert abs(estimate - n) <= max(2, 0.25 * n), (n, estimate)


def test_apply_update_is_pure_and_counts():
    cells = apply_update({}, Update("k", "m1", "phishing", 500.0, "r1"), now_ms=1)
    cells = {**cells, **apply_update(cells, Update("k", "m2", "safe", 400.0, "r2"), now_ms=2)}  # SetCell merges
    ints = {k: decode_int(v) for k, v in cells.items() if k != "recipients_hll"}
    assert ints["msg_count"] == 2 and ints["flagged_count"] == 1
    assert (ints["first_seen"], ints["last_seen"]) == (400, 500)
    assert ints["label_safe"] == 1 and ints["label_phishing"] == 1
    assert ints["recipients"] == 2 and ints["version"] == 2 and ints["updated_at"] == 2
