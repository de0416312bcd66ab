"""Live sender profiles on the emulators: exactly-once updates, crashes, degraded reads."""

from __future__ import annotations

import base64
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from emails import make_email
from mailscore import emulators as emu
from mailscore import runner, topology
from mailscore.cache import BoundedCache
from mailscore.history import Breaker, HistorySource
from mailscore.profiles import LABELS, ProfileStore, Update, ensure_table, profile_key, recipient_hash
from mailscore.scoring import Scorer
from mailscore.settings import env_var

pytestmark = pytest.mark.emulator
SENDERS = ["news@news.example.org", "alice@corp.example", "orders@shop.example.com", "x@lookalike.example.net"]


def _verdict(tenant: str, sender: str, i: int, label: str) -> bytes:
    return json.dumps({
        "tenant": tenant, "message_id": f"m-{i:04d}", "label": label, "score": 0.5,
        "profile_key": profile_key(tenant, sender), "observed_at": 1_770_000_000 + i * 60,
        "recipient_hash": recipient_hash(f"user{i % 7}@corp.example"),
    }).encode()


def test_apply_is_exactly_once_per_message(unique_settings):
    ensure_table(unique_settings)
    store = ProfileStore(unique_settings)
    key = profile_key("acme", "a@x.example")
    first = Update(key, "m1", "phishing", 1000.0, recipient_hash("r1@corp.example"))
    assert store.apply(first) == "applied"
    assert store.apply(first) == "duplicate"
    assert store.apply(Update(key, "m2", "safe", 900.0, recipient_hash("r2@corp.example"))) == "applied"
    snap = store.read(key)
    assert (snap.history.msg_count, snap.history.flagged_count, snap.history.first_seen) == (2, 1, 900.0)
    assert snap.history.recipients == 2 and snap.updated_at is not None
    # Concurrent deliveries of the same messages: each counts once.
    updates = [Update(key, f"c{i % 10}", "safe", 2000.0 + i) for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(store.apply, updates))
    assert outcomes.count("applied") == 10 and outcomes.count("duplicate") == 30
    assert store.read(key).history.msg_count == 12
    store.close()


def test_updater_survives_crash_and_duplicates_exactly(unique_settings, tmp_path):
    """Publish verdicts with duplicates, kill the updater mid-batch; counts stay exact."""
    from google.cloud import pubsub_v1

    settings = unique_settings
    topology.create_topics(settings)
    ensure_table(settings)
    subscriber = pubsub_v1.SubscriberClient()
    deliver = topology.subscription_path(settings, f"deliver-{settings.verdict_topic}")
    subscriber.create_subscription(request={"name": deliver, "topic": topology.topic_path(settings, settings.verdict_topic),
                                            "ack_deadline_seconds": 10})
    rng = random.Random(5)
    expected: dict[str, dict[str, int]] = {s: dict.fromkeys(LABELS, 0) for s in SENDERS}
    publisher = pubsub_v1.PublisherClient()
    topic = topology.topic_path(settings, settings.verdict_topic)
    published = []
    for i in range(80):
        sender, label = rng.choice(SENDERS), rng.choice(LABELS)
        expected[sender][label] += 1
        for _ in range(rng.choice([1, 1, 2, 3])):  # publisher retries: the same message id again
            published.append(publisher.publish(topic, _verdict("acme", sender, i, label), tenant="acme", message_id=f"m-{i:04d}"))
    for future in published:
        future.result()

    port = emu.free_port()
    env = {**os.environ}
    for name in ("project_id", "profile_table", "dead_letter_topic", "verdict_topic"):
        env[env_var(name)] = str(getattr(settings, name))
    start = lambda: runner.serve_function(env, port, tmp_path / "updater.log", workers=1, threads=4, target="update_profile")  # noqa: E731
    server = start()
    runner.wait_until_serving(port, server)
    acked: set[str] = set()
    crashed = False

    def post(received) -> tuple[str, bool]:
        m = received.message
        body = {"message": {"data": base64.b64encode(m.data).decode(), "messageId": m.message_id,
                            "attributes": dict(m.attributes), "publishTime": "2026-12-04T00:00:00Z"},
                "subscription": deliver}
        try:
            ok = requests.post(f"http://127.0.0.1:{port}/", json=body, timeout=10).status_code < 300
        except requests.RequestException:
            ok = False
        return received.ack_id, ok

    try:
        with ThreadPoolExecutor(8) as pool:
            while len(acked) < len(published):
                response = subscriber.pull(request={"subscription": deliver, "max_messages": 100}, timeout=10)
                batch = list(response.received_messages)
                if not crashed and len(acked) >= 20:
                    futures = [pool.submit(post, r) for r in batch]
                    os.killpg(server.pid, 9)  # SIGKILL while those posts are in flight
                    server.wait()
                    crashed = True
                    results = [f.result() for f in futures]
                    server = start()
                    runner.wait_until_serving(port, server)
                else:
                    results = list(pool.map(post, batch))
                ok_ids = [ack for ack, ok in results if ok]
                failed = [ack for ack, ok in results if not ok]
                if ok_ids:
                    subscriber.acknowledge(request={"subscription": deliver, "ack_ids": ok_ids})
                if failed:  # as Pub/Sub does after a failed push: redeliver
                    subscriber.modify_ack_deadline(request={"subscription": deliver, "ack_ids": failed, "ack_deadline_seconds": 0})
                acked.update(r.message.message_id for r in batch if r.ack_id in set(ok_ids))
    finally:
        emu.stop_process(server)
    assert crashed
    store = ProfileStore(settings)
    for sender in SENDERS:
        history = store.read(profile_key("acme", sender)).history
        assert history.msg_count == sum(expected[sender].values()), sender
        assert history.flagged_count == expected[sender]["phishing"], sender
    store.close()
    assert "corp.example" not in (tmp_path / "updater.log").read_text()


def test_scoring_degrades_within_budget_and_recovers(unique_settings, model, tmp_path, monkeypatch):
    own = emu.Emulators(log_dir=tmp_path)
    own.start_bigtable()
    port = int(own.bigtable_host.rsplit(":", 1)[1])
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", own.bigtable_host)
    settings = unique_settings.__class__.from_env(env={}, profile_table=unique_settings.profile_table, latency_budget_ms=150.0)
    ensure_table(settings)
    store = ProfileStore(settings)
    store.apply(Update(profile_key("acme", "alice@corp.example"), "seed", "safe", 1_700_000_000.0))
    source = HistorySource(store.read, BoundedCache(1000, 0.0), Breaker(failures=3, cooldown_s=0.5))
    scorer = Scorer(settings, model, source)
    email = make_email()
    ok = scorer.score(email, tenant="acme", message_id="before")
    assert not ok["degraded"] and ok["sender_known"] and ok["history"]["age_s"] is not None
    own.stop()
    try:
        budget_ms = settings.latency_budget_ms
        down = [scorer.score(email, tenant="acme", message_id=f"down-{i}") for i in range(20)]
        assert all(v["degraded"] for v in down)
        assert {r for v in down for r in v["degraded_reasons"]} <= {"history_timeout", "history_error", "history_circuit_open"}
        # The read was bounded by what was left of the budget, not the client's default timeouts.
        assert max(v["timings"]["history_ms"] for v in down) <= budget_ms * 1.5
        assert any(r == "history_circuit_open" for v in down for r in v["degraded_reasons"])
    finally:
        own.start_bigtable(port)  # the same address: the client reconnects by itself
    ensure_table(settings)  # the in-memory emulator lost the table; real Bigtable would not
    store_apply = ProfileStore(settings)
    store_apply.apply(Update(profile_key("acme", "alice@corp.example"), "seed", "safe", 1_700_000_000.0))
    store_apply.close()
    deadline = time.monotonic() + 60
    recovered = None
    while time.monotonic() < deadline:
        verdict = scorer.score(email, tenant="acme", message_id="after")
        if not verdict["degraded"]:
            recovered = verdict
            break
        time.sleep(0.2)  # polling for recovery, not for a race: the breaker's cool-down has to pass
    own.stop()
    store.close()
    assert recovered is not None and recovered["sender_known"]
