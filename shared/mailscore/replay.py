"""`mailscore replay`: republish dead-lettered emails to the inbound topic.

Dead-letter records keep the original payload and attributes, plus
``reason``, ``stage``, ``detail`` and ``pubsub_message_id`` added by the
worker (or ``CloudPubSubDeadLetter*`` added by Pub/Sub's dead-letter
policy). Replay strips those, republishes the original, and acknowledges
the record only after the republish succeeded: a crash mid-replay replays
again rather than loses. Records whose reason is filtered out are left
unacknowledged (their ack deadline is reset so they stay for later).
"""

from __future__ import annotations

import time
from collections import Counter

from mailscore.claimcheck import make_publisher
from mailscore.collector import DLQ_SOURCE_ATTR
from mailscore.settings import Settings
from mailscore.topology import subscription_path, topic_path

ADDED_BY_DEAD_LETTERING = frozenset({"reason", "stage", "detail", "pubsub_message_id"})


def original_attributes(attributes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items()
            if k not in ADDED_BY_DEAD_LETTERING and not k.startswith("CloudPubSubDeadLetter")}


def reason_of(attributes: dict[str, str]) -> str:
    return attributes.get("reason") or ("delivery_attempts_exhausted" if DLQ_SOURCE_ATTR in attributes else "unknown")


def replay_dead_letters(settings: Settings, subscription: str, *, reasons: set[str] | None = None, limit: int = 0,
                        dry_run: bool = False, idle_seconds: float = 5.0) -> dict:
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    if "/" not in subscription:
        subscription = subscription_path(settings, subscription)
    subscriber = pubsub_v1.SubscriberClient()
    publisher = make_publisher()
    inbound = topic_path(settings, settings.inbound_topic)
    replayed: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    kept_ids: set[str] = set()
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_seconds and not (limit and sum(replayed.values()) >= limit):
            try:
                response = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=5)
            except gexc.DeadlineExceeded:
                continue
            if not response.received_messages:
                continue
            last = time.monotonic()
            if all(r.message.message_id in kept_ids for r in response.received_messages):
                break  # only records we already decided to leave: one full pass is done
            ack, keep, futures = [], [], []
            for received in response.received_messages:
                if received.message.message_id in kept_ids:
                    keep.append(received.ack_id)
                    continue
                attributes = dict(received.message.attributes)
                reason = reason_of(attributes)
                if (reasons and reason not in reasons) or dry_run or (limit and sum(replayed.values()) >= limit):
                    keep.append(received.ack_id)
                    kept_ids.add(received.message.message_id)
                    (replayed if dry_run and not (reasons and reason not in reasons) else skipped)[reason] += 1
                    continue
                futures.append(publisher.publish(inbound, received.message.data, **original_attributes(attributes)))
                ack.append(received.ack_id)
                replayed[reason] += 1
            for future in futures:
                future.result(timeout=60)
            if ack:
                subscriber.acknowledge(request={"subscription": subscription, "ack_ids": ack})
            if keep:
                subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": keep, "ack_deadline_seconds": 0})
    finally:
        subscriber.close()
    return {"replayed" if not dry_run else "would_replay": dict(replayed), "left": dict(skipped)}
