"""The function's publisher: one Publish RPC per verdict, on the emulator; a failure comes back in the future."""

from __future__ import annotations

import pytest

from mailscore import emulators as emu
from mailscore import topology
from mailscore.worker import DirectPublisher

pytestmark = pytest.mark.emulator


def test_publishes_data_and_attributes_to_the_emulator(unique_settings):
    from google.cloud import pubsub_v1

    topology.create_topics(unique_settings)
    topic = topology.topic_path(unique_settings, unique_settings.verdict_topic)
    subscriber = pubsub_v1.SubscriberClient()
    subscription = topology.subscription_path(unique_settings, f"{unique_settings.verdict_topic}-direct")
    subscriber.create_subscription(request={"name": subscription, "topic": topic})
    try:
        message_id = DirectPublisher(5.0).publish(topic, b'{"label": "safe"}', tenant="t1", message_id="m1").result()
        assert message_id
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=10)
        [received] = response.received_messages
        assert received.message.data == b'{"label": "safe"}'
        assert dict(received.message.attributes) == {"tenant": "t1", "message_id": "m1"}
        assert received.message.message_id == message_id
    finally:
        subscriber.delete_subscription(request={"subscription": subscription})
        subscriber.close()


def test_an_unreachable_endpoint_fails_within_the_timeout(monkeypatch, unique_settings):
    import time

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{emu.free_port()}")  # nothing listens there
    began = time.monotonic()
    future = DirectPublisher(1.0).publish(topology.topic_path(unique_settings, "nowhere"), b"x", tenant="t")
    # Not a speed target: the library's own retry would go on for a minute or more; the budget stops it.
    assert future.done() and time.monotonic() - began < 15
    with pytest.raises(Exception) as caught:
        future.result(timeout=0)
    assert type(caught.value).__name__ in {"RetryError", "ServiceUnavailable", "DeadlineExceeded"}
