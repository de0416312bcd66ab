"""The topics, subscriptions and table of the pipeline, created on the emulators.

Names come from ``Settings`` (the same variables Terraform sets), so a
local run and a deployment use one naming scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailscore.settings import Settings

PUSH_SUBSCRIPTION = "score-email-push"
MAX_DELIVERY_ATTEMPTS = 5
RETRY_MIN_BACKOFF_S = 1
RETRY_MAX_BACKOFF_S = 10


@dataclass(frozen=True)
class Subscriptions:
    push: str
    verdicts: str
    dead_letter: str


def topic_path(settings: Settings, name: str) -> str:
    return f"projects/{settings.project_id}/topics/{name}"


def subscription_path(settings: Settings, name: str) -> str:
    return f"projects/{settings.project_id}/subscriptions/{name}"


def create_topics(settings: Settings) -> None:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    for name in (settings.inbound_topic, settings.verdict_topic, settings.dead_letter_topic):
        try:
            publisher.create_topic(name=topic_path(settings, name))
        except AlreadyExists:
            pass


def create_subscriptions(settings: Settings, push_endpoint: str, suffix: str = "") -> Subscriptions:
    """The function's push subscription (retry + dead-letter policy) and two pull ones."""
    subs = Subscriptions(
        push=subscription_path(settings, PUSH_SUBSCRIPTION + suffix),
        verdicts=subscription_path(settings, f"{settings.verdict_topic}-collector{suffix}"),
        dead_letter=subscription_path(settings, f"{settings.dead_letter_topic}-collector{suffix}"),
    )
    requests = [
        delivery_request(settings, subs.push, settings.inbound_topic, push_endpoint),
        {"name": subs.verdicts, "topic": topic_path(settings, settings.verdict_topic), "ack_deadline_seconds": 60},
        {"name": subs.dead_letter, "topic": topic_path(settings, settings.dead_letter_topic), "ack_deadline_seconds": 60},
    ]
    # Pull subscriptions first: they must exist before the first message is scored.
    for request in reversed(requests):
        _create(request)
    return subs


def delivery_request(settings: Settings, name: str, topic: str, push_endpoint: str | None = None) -> dict:
    """A subscription with the pipeline's delivery policy: retry with backoff, then dead-letter."""
    from google.protobuf import duration_pb2

    request = {
        "name": name,
        "topic": topic_path(settings, topic),
        "ack_deadline_seconds": 60,
        "dead_letter_policy": {
            "dead_letter_topic": topic_path(settings, settings.dead_letter_topic),
            "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
        },
        "retry_policy": {
            "minimum_backoff": duration_pb2.Duration(seconds=RETRY_MIN_BACKOFF_S),
            "maximum_backoff": duration_pb2.Duration(seconds=RETRY_MAX_BACKOFF_S),
        },
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    return request


def _create(request: dict) -> str:
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    try:
        subscriber.create_subscription(request=request)
    except AlreadyExists:
        pass
    subscriber.close()
    return request["name"]


def create_batch_subscription(settings: Settings, suffix: str = "") -> str:
    """The micro-batched worker's pull subscription on the inbound topic (same retry and dead-letter policy)."""
    name = subscription_path(settings, settings.batch_subscription + suffix)
    return _create(delivery_request(settings, name, settings.inbound_topic))


def create_update_subscription(settings: Settings, push_endpoint: str, suffix: str = "") -> str:
    """The profile updater's push subscription on the verdict topic (retry + dead-letter policy)."""
    name = subscription_path(settings, settings.update_subscription + suffix)
    return _create(delivery_request(settings, name, settings.verdict_topic, push_endpoint))
