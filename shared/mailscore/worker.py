"""The scoring function's body: one Pub/Sub message in, one verdict or dead-letter out.

Delivery semantics:

* invalid input (undecodable, not an email, no tenant) is published to the
  dead-letter topic with ``reason``, ``stage`` and the original attributes,
  payload intact for replay, and the delivery is acknowledged;
* transient failures (Bigtable, publish) raise, so Pub/Sub redelivers with
  backoff and, after the subscription's maximum attempts, dead-letters it;
* anything unexpected while scoring is logged with its type (never content)
  and raised too: it is retried, then dead-lettered by the subscription.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from mailscore import envelope
from mailscore.errors import InvalidMessage, TransientError
from mailscore.settings import Settings

log = logging.getLogger("mailscore.worker")


def topic_path(settings: Settings, topic: str) -> str:
    return f"projects/{settings.project_id}/topics/{topic}"


class Worker:
    """Everything one function instance loads once: settings, model, clients."""

    def __init__(self, settings: Settings, scorer: Any, publisher: Any) -> None:
        self.settings = settings
        self.scorer = scorer
        self.publisher = publisher
        self.verdict_topic = topic_path(settings, settings.verdict_topic)
        self.dead_letter_topic = topic_path(settings, settings.dead_letter_topic)

    @classmethod
    def from_settings(cls, settings: Settings) -> Worker:
        from google.cloud import pubsub_v1

        from mailscore.profiles import ProfileStore
        from mailscore.scoring import Scorer

        model, shadow = load_models(settings)
        store = ProfileStore(settings)
        publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.002, max_messages=100)
        )
        log.info("worker ready", extra={"fields": {"model_version": model.version,
                                                   "shadow_model_version": shadow.version if shadow else None}})
        return cls(settings, Scorer(settings, model, store.get, shadow=shadow), publisher)

    def handle_event(self, event: Any) -> dict:
        """Handle one CloudEvent; returns the verdict or the dead-letter record."""
        received = time.perf_counter()
        try:
            message = envelope.from_cloud_event(event)
        except InvalidMessage as exc:
            raw = _event_bytes(event)
            return self._dead_letter(raw, {}, "", exc)
        return self.handle(message, received)

    def handle(self, message: envelope.InboundMessage, received: float | None = None) -> dict:
        received = received or time.perf_counter()
        try:
            envelope.require_tenant(message)
            verdict = self.scorer.score(message.data, tenant=message.tenant, message_id=message.message_id)
        except InvalidMessage as exc:
            return self._dead_letter(message.data, message.attributes, message.pubsub_message_id, exc)
        except TransientError as exc:
            log.warning("transient failure, redelivery requested", extra={"fields": self._ids(message, error=str(exc))})
            raise
        except Exception as exc:
            log.error("unexpected scoring failure", extra={"fields": self._ids(message, error=type(exc).__name__)})
            raise
        if message.publish_time is not None:
            verdict["timings"]["since_publish_ms"] = round(
                (time.time() - message.publish_time.timestamp()) * 1000.0, 3
            )
        attributes = {"tenant": message.tenant, "label": verdict["label"], "message_id": message.message_id}
        self._publish(self.verdict_topic, json.dumps(verdict, separators=(",", ":")).encode(), attributes)
        log.info(
            "scored",
            extra={"fields": {
                "tenant": message.tenant, "message_id": message.message_id, "label": verdict["label"],
                "score": verdict["score"], "model_version": verdict["model_version"],
                "degraded": verdict["degraded"], "latency_ms": round((time.perf_counter() - received) * 1000, 3),
            }},
        )
        return verdict

    def _dead_letter(self, raw: bytes, attributes: dict[str, str], pubsub_id: str, exc: InvalidMessage) -> dict:
        record = {
            **attributes,
            "reason": exc.reason,
            "stage": exc.stage,
            "detail": exc.detail[:200],
            "pubsub_message_id": pubsub_id,
        }
        self._publish(self.dead_letter_topic, raw or b"-", record)
        log.warning(
            "dead-lettered",
            extra={"fields": {"tenant": attributes.get("tenant", ""), "message_id": attributes.get("message_id", ""),
                              "reason": exc.reason, "stage": exc.stage}},
        )
        return {"dead_letter": True, **record}

    def _publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        try:
            self.publisher.publish(topic, data, **attributes).result(timeout=self.settings.publish_timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - any publish failure is retried by redelivery
            raise TransientError(f"publish to {topic.rsplit('/', 1)[-1]} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _ids(message: envelope.InboundMessage, **more: Any) -> dict:
        return {"tenant": message.tenant, "message_id": message.message_id, **more}


def load_models(settings: Settings) -> tuple[Any, Any]:
    """The live model (a failure stops the instance) and the shadow, if one is set.

    A shadow that cannot be loaded is logged as an error and left out: a
    candidate must never take the live scoring down with it.
    """
    from mailscore.errors import ModelError
    from mailscore.model import load_model_from

    model = load_model_from(settings.model_dir, settings.model_cache_dir)
    shadow = None
    if settings.shadow_model_dir:
        try:
            shadow = load_model_from(settings.shadow_model_dir, Path(settings.model_cache_dir) / "shadow")
        except ModelError as exc:
            log.error("shadow model not loaded, scoring without it", extra={"fields": {"error": str(exc)}})
    return model, shadow


def _event_bytes(event: Any) -> bytes:
    """The undecodable event's payload, as bytes, so the dead-letter keeps it."""
    data = getattr(event, "data", event)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    try:
        return json.dumps(data, default=str).encode()
    except (TypeError, ValueError):
        return repr(data).encode()
