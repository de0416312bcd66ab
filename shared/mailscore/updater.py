"""The profile updater's body: one verdict in, the sender's row updated exactly once.

Subscribed to the verdict topic, not the inbound one: the verdict already
carries what the update needs (``profile_key``, label, time, a recipient
hash) without the email, the label feeds the per-label counts, and the
update lands after the message was scored, so a message never counts in
its own history. Bigtable failures raise so Pub/Sub redelivers; the dedupe
marker written atomically with the counters makes that safe.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mailscore import envelope
from mailscore.errors import InvalidMessage
from mailscore.profiles import LABELS, Update
from mailscore.settings import Settings
from mailscore.worker import Worker

log = logging.getLogger("mailscore.updater")


def update_from_verdict(data: bytes) -> Update | None:
    """The Update a verdict implies; None when the sender was unidentifiable."""
    try:
        verdict = json.loads(data)
    except ValueError:
        raise InvalidMessage("verdict_not_json", "the verdict is not JSON", stage="update") from None
    if not isinstance(verdict, dict):
        raise InvalidMessage("verdict_invalid", "the verdict is not an object", stage="update")
    key = verdict.get("profile_key")
    if key is None:
        return None
    message_id, label, observed = verdict.get("message_id"), verdict.get("label"), verdict.get("observed_at")
    if not isinstance(key, str) or not key or not isinstance(message_id, str) or not message_id:
        raise InvalidMessage("verdict_invalid", "profile_key or message_id missing", stage="update")
    if label not in LABELS:
        raise InvalidMessage("verdict_invalid", "unknown label", stage="update")
    if not isinstance(observed, (int, float)):
        raise InvalidMessage("verdict_invalid", "observed_at missing", stage="update")
    recipient = verdict.get("recipient_hash")
    return Update(key, message_id[:256], label, float(observed), recipient if isinstance(recipient, str) else None)


class Updater(Worker):
    """Shares the dead-letter path with the scoring worker; applies updates instead."""

    def __init__(self, settings: Settings, store: Any, publisher: Any) -> None:
        super().__init__(settings, scorer=None, publisher=publisher)
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings) -> Updater:
        from google.cloud import pubsub_v1

        from mailscore.profiles import ProfileStore

        return cls(settings, ProfileStore(settings), pubsub_v1.PublisherClient())

    def handle(self, message: envelope.InboundMessage, received: float | None = None) -> dict:
        try:
            update = update_from_verdict(message.data)
        except InvalidMessage as exc:
            return self._dead_letter(message.data, message.attributes, message.pubsub_message_id, exc)
        if update is None:
            log.info("no sender identity, nothing to update", extra={"fields": self._ids(message)})
            return {"outcome": "skipped"}
        outcome = self.store.apply(update)  # TransientError propagates: redelivered
        log.info("profile update", extra={"fields": self._ids(message, outcome=outcome)})
        return {"outcome": outcome}
