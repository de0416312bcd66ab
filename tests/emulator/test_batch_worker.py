"""The micro-batched worker on the emulators: same verdicts as the function path, acks after publish."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import TRAIN_DIR
from emails import make_email
from mailscore import topology
from mailscore.batch_worker import BatchWorker
from mailscore.features import History
from mailscore.model import load_model
from mailscore.profiles import Profile, ProfileStore, ensure_table, profile_key
from mailscore.history import HistorySource
from mailscore.scoring import Scorer
from mailscore.training import build_dataset
from test_pipeline import _pull_all

pytestmark = pytest.mark.emulator


def test_read_many_equals_read(unique_settings):
    ensure_table(unique_settings)
    store = ProfileStore(unique_settings)
    profile = Profile()
    profile.add(1_700_000_000.0, True, "bob@corp.example")
    store.write([("acme", "a@one.example", profile), ("acme", "b@two.example", profile), ("beta", "a@one.example", profile)])
    pairs = [("acme", "a@one.example"), ("acme", "B@two.example"), ("acme", "nobody@one.example"),
             ("beta", "a@one.example"), ("gamma", "a@one.example"), ("acme", "a@one.example")]
    keys = [profile_key(*pair) for pair in pairs]
    many = store.read_many(keys)  # one read_rows for all of them
    assert set(many) == set(keys)
    for key in keys:
        assert many[key].history == store.read(key).history
    assert many[profile_key("acme", "B@two.example")].history.msg_count == 1
    assert many[profile_key("gamma", "a@one.example")].history == History()
    assert store.read_many([]) == {}
    store.close()


def test_batch_worker_matches_function_path(unique_settings):
    from google.cloud import pubsub_v1

    settings = unique_settings
    topology.create_topics(settings)
    ensure_table(settings)
    data = build_dataset([TRAIN_DIR], settings, tenant="acme")
    store = ProfileStore(settings)
    store.write((t, a, p) for (t, a), p in data.profiles.items())
    subscriber = pubsub_v1.SubscriberClient()
    verdict_sub = topology.subscription_path(settings, "verdicts-batch-test")
    dead_sub = topology.subscription_path(settings, "dead-batch-test")
    subscriber.create_subscription(request={"name": verdict_sub, "topic": topology.topic_path(settings, settings.verdict_topic)})
    subscriber.create_subscription(request={"name": dead_sub, "topic": topology.topic_path(settings, settings.dead_letter_topic)})
    batch_sub = topology.create_batch_subscription(settings)

    emails = {f"m{i}": p.read_bytes() for i, p in enumerate(sorted(TRAIN_DIR.rglob("*.eml")))}
    publisher = pubsub_v1.PublisherClient()
    topic = topology.topic_path(settings, settings.inbound_topic)
    futures = [publisher.publish(topic, raw, tenant="acme", message_id=mid) for mid, raw in emails.items()]
    futures.append(publisher.publish(topic, make_email(), message_id="no-tenant"))
    futures.append(publisher.publish(topic, b"\x89PNG\r\n\x1a\n\x00binary", tenant="acme", message_id="binary"))
    for future in futures:
        future.result(timeout=30)

    worker = BatchWorker.from_settings(settings, subscription=batch_sub, pull_threads=2, max_wait_ms=10)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        verdicts = _pull_all(subscriber, verdict_sub, len(emails), timeout=90)
        dead = _pull_all(subscriber, dead_sub, 2, timeout=90)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()  # drained and stopped

    scorer = Scorer(settings, load_model(settings.model_dir), HistorySource(store.read))
    volatile = ("timings", "observed_at", "verdict_id", "history")  # times of day, and the id added around the scorer
    by_id = {m.attributes["message_id"]: m for m in verdicts}
    assert set(by_id) == set(emails)
    for mid, raw in emails.items():
        got = json.loads(by_id[mid].data)
        want = scorer.score(raw, tenant="acme", message_id=mid)
        assert {k: v for k, v in got.items() if k not in volatile} == {k: v for k, v in want.items() if k not in volatile}
        assert got["history"]["status"] == want["history"]["status"] == "read"
        assert by_id[mid].attributes["label"] == want["label"] and by_id[mid].attributes["tenant"] == "acme"
        assert got["timings"]["batch_size"] >= 1
    assert sum(json.loads(m.data)["sender_known"] for m in verdicts) > 10
    reasons = {m.attributes["message_id"]: (m.attributes["reason"], m.attributes["stage"]) for m in dead}
    assert reasons == {"no-tenant": ("missing_tenant", "decode"), "binary": ("not_an_email", "parse")}
    assert worker.counts["verdicts"] == len(emails) and worker.counts["dead_lettered"] == 2
    # Everything was acknowledged after publishing: nothing comes back.
    response = subscriber.pull(request={"subscription": batch_sub, "max_messages": 100}, timeout=5)
    assert not response.received_messages
    store.close()
    subscriber.close()
