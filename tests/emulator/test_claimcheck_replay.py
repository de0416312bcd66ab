"""Large emails by claim-check, verdict ids, and replay of dead-lettered emails."""

from __future__ import annotations

import json
import os

import pytest

from emails import make_email
from mailscore import emulators as emu
from mailscore import runner, topology
from mailscore.claimcheck import ATTR_URI, make_publisher, publish_email
from mailscore.profiles import ensure_table
from mailscore.replay import replay_dead_letters
from mailscore.settings import env_var
from test_pipeline import _pull_all

pytestmark = pytest.mark.emulator


def _serve(settings, tmp_path, name, **overrides):
    port = emu.free_port()
    env = {**os.environ, env_var("model_dir"): settings.model_dir}
    for key in ("inbound_topic", "verdict_topic", "dead_letter_topic", "profile_table"):
        env[env_var(key)] = getattr(settings, key)
    for key, value in overrides.items():
        env[env_var(key)] = str(value)
    server = runner.serve_function(env, port, tmp_path / f"{name}.log", workers=1, threads=2)
    runner.wait_until_serving(port, server)
    return server, port


def test_large_email_travels_by_claim_check_and_replay_after_fix(unique_settings, tmp_path):
    from google.cloud import pubsub_v1

    store_dir = tmp_path / "bucket"
    settings = unique_settings.__class__.from_env(
        env={}, **{k: getattr(unique_settings, k) for k in ("inbound_topic", "verdict_topic", "dead_letter_topic", "profile_table", "model_dir")},
        claim_check_threshold_bytes=4096, claim_check_location=str(store_dir))
    topology.create_topics(settings)
    ensure_table(settings)
    big = make_email(body="Quarterly figures follow.\n" + "row, 1, 2, 3, 4\n" * 2000)
    assert len(big) > 4096
    publisher = make_publisher()
    topic = topology.topic_path(settings, settings.inbound_topic)
    subscriber = pubsub_v1.SubscriberClient()
    replay_sub = topology.subscription_path(settings, "dlq-replay")  # where an operator keeps dead letters
    subscriber.create_subscription(request={"name": replay_sub, "topic": topology.topic_path(settings, settings.dead_letter_topic)})

    # 1. A worker without a claim-check location dead-letters the reference, payload intact.
    server, port = _serve(settings, tmp_path, "no-store")
    try:
        subs = topology.create_subscriptions(settings, f"http://127.0.0.1:{port}/", "-a")
        publish_email(publisher, topic, big, {"tenant": "acme", "message_id": "big-1"}, settings).result()
        publish_email(publisher, topic, make_email(), {"tenant": "acme", "message_id": "small-1"}, settings).result()
        dead = _pull_all(subscriber, subs.dead_letter, 1)
        verdicts = _pull_all(subscriber, subs.verdicts, 1)
    finally:
        emu.stop_process(server)
    assert [m.attributes["reason"] for m in dead] == ["claim_check_unsupported"]
    assert ATTR_URI in dead[0].attributes and len(dead[0].data) < 1000  # the reference, not the email
    assert [m.attributes["message_id"] for m in verdicts] == ["small-1"]
    assert list(store_dir.rglob("*.eml"))[0].read_bytes() == big

    # 2. After the fix (the worker knows the store), replay scores it.
    subscriber.delete_subscription(request={"subscription": subs.push})
    server, port = _serve(settings, tmp_path, "with-store", claim_check_location=str(store_dir))
    try:
        subs2 = topology.create_subscriptions(settings, f"http://127.0.0.1:{port}/", "-b")
        counts = replay_dead_letters(settings, replay_sub, idle_seconds=3)
        verdicts = _pull_all(subscriber, subs2.verdicts, 1)
    finally:
        emu.stop_process(server)
    assert counts["replayed"] == {"claim_check_unsupported": 1}
    verdict = json.loads(verdicts[0].data)
    assert verdict["message_id"] == "big-1" and verdict["label"] in ("safe", "suspicious", "phishing")
    assert verdicts[0].attributes["verdict_id"] == verdict["verdict_id"] and len(verdict["verdict_id"]) == 32
    assert "reason" not in verdicts[0].attributes
