"""Benchmark of the profile cache: hit ratio and scoring latency with and without it.

Both arms run in one process, on one Bigtable emulator, over the same stream
of messages: emails drawn with a Zipf-like repeat rate of senders (a few
senders send most mail, as in real traffic). Each arm scores the stream
through ``Scorer`` with a ``HistorySource``; the only difference is the
cache (``max_entries`` 0 disables it). Arms alternate in blocks so a
background load affects both alike. Prints and returns a ``cache`` object
for ``out/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from mailscore.cache import BoundedCache
from mailscore.features import parse_sender
from mailscore.history import HistorySource
from mailscore.model import load_model
from mailscore.parse import parse_email
from mailscore.profiles import ProfileStore, load_profiles
from mailscore.scoring import Scorer
from mailscore.settings import Settings
from mailscore.training import build_dataset, find_emails


def zipf_stream(items: list, count: int, exponent: float = 1.1, seed: int = 11) -> list:
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) ** exponent for rank in range(len(items))]
    shuffled = items[:]
    rng.shuffle(shuffled)
    return rng.choices(shuffled, weights=weights, k=count)


def measure(settings: Settings, paths: list[Path], count: int = 3000, block: int = 250, progress: bool = True) -> dict:
    from tqdm import tqdm

    load_profiles(settings, build_dataset(paths, settings, "bench").profiles)
    store = ProfileStore(settings)
    model = load_model(settings.model_dir)
    emails = [p.read_bytes() for p in find_emails(paths)]
    by_sender: dict[str, bytes] = {}
    for raw in emails:
        address = parse_sender(parse_email(raw).get("from")).address
        if address:
            by_sender.setdefault(address, raw)
    stream = zipf_stream(list(by_sender.values()), count)
    cached = BoundedCache(settings.profile_cache_max_entries, settings.profile_cache_ttl_seconds)
    arms = {
        "with_cache": Scorer(settings, model, HistorySource(store.read, cached)),
        "without_cache": Scorer(settings, model, HistorySource(store.read, BoundedCache(0, 0.0))),
    }
    latencies: dict[str, list[float]] = {name: [] for name in arms}
    history_ms: dict[str, list[float]] = {name: [] for name in arms}
    bar = tqdm(total=2 * count, desc="cache bench", unit="msg", disable=not progress, file=sys.stderr)
    for start in range(0, count, block):
        for name, scorer in arms.items():
            for i, raw in enumerate(stream[start : start + block], start):
                began = time.perf_counter()
                verdict = scorer.score(raw, tenant="bench", message_id=f"{name}-{i}",
                                       deadline=time.monotonic() + 1.0)
                latencies[name].append((time.perf_counter() - began) * 1000.0)
                history_ms[name].append(verdict["timings"]["history_ms"])
            bar.update(len(stream[start : start + block]))
    bar.close()
    store.close()
    stats = cached.stats()

    def p(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 4)

    result = {
        "hit_ratio": round(stats.hit_ratio, 4),
        "p99_latency_with_over_without": round(p(latencies["with_cache"], 99) / p(latencies["without_cache"], 99), 4),
        "messages_per_arm": count,
        "distinct_senders": len(by_sender),
        "scoring_ms": {name: {"p50": p(v, 50), "p99": p(v, 99)} for name, v in latencies.items()},
        "history_ms": {name: {"p50": p(v, 50), "p99": p(v, 99)} for name, v in history_ms.items()},
        "cache_stats": stats.as_dict(),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    import os

    from mailscore import emulators as emu

    parser = argparse.ArgumentParser(description="profile cache benchmark on the Bigtable emulator")
    parser.add_argument("paths", nargs="*", default=["data/train"])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--out", default="out/bench_cache.json")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")
    started = None
    if not os.environ.get("BIGTABLE_EMULATOR_HOST"):
        started = emu.Emulators()
        started.start_bigtable()
        os.environ["BIGTABLE_EMULATOR_HOST"] = started.bigtable_host
    try:
        result = measure(Settings.from_env(), [Path(p) for p in args.paths], args.count)
    finally:
        if started is not None:
            started.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cache": result}, indent=2) + "\n")
    print(json.dumps({"cache": result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
