"""The scoring function's body: one Pub/Sub message in, one verdict or dead-letter out.

Delivery semantics:

* invalid input (undecodable, not an email, no tenant) is published to the
  dead-letter topic with ``reason``, ``stage`` and the original attributes,
  payload intact for replay, and the delivery is acknowledged;
* a Bigtable failure or timeout never holds a message back: it is scored
  without history and the verdict is ``degraded`` with the reason;
* a failed publish raises, so Pub/Sub redelivers with backoff and, after
  the subscription's maximum attempts, dead-letters it;
* anything unexpected while scoring is logged with its type and innermost
  frame (never content) and raised as ``UnexpectedFailure``, which carries
  only the type name (what escapes is logged by functions-framework): it is
  retried, then dead-lettered by the subscription.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mailscore import claimcheck, envelope
from mailscore.errors import InvalidMessage, TransientError, UnexpectedFailure
from mailscore.scoring import Item
from mailscore.settings import Settings

log = logging.getLogger("mailscore.worker")
METRICS_EVERY = 500


def verdict_id(tenant: str, message_id: str, model_version: str) -> str:
    """Deterministic: a redelivered message scored again gets the same id, so consumers can deduplicate."""
    return hashlib.sha256(f"{tenant}\x00{message_id}\x00{model_version}".encode("utf-8")).hexdigest()[:32]


def scoring_item(message: envelope.InboundMessage, settings: Settings, claim_store: Any) -> Item:
    """What the scorer needs from a delivered message, for the function and the batched worker alike.

    Checks the tenant, fetches a claim-checked email (InvalidMessage or
    TransientError), and turns ``publishTime`` plus the latency budget into
    the message's deadline on the monotonic clock.
    """
    envelope.require_tenant(message)
    if claimcheck.ATTR_URI in message.attributes:
        message.data = claimcheck.fetch(claim_store, message.attributes)
    published = message.publish_time.timestamp() if message.publish_time is not None else time.time()
    deadline = time.monotonic() + (published + settings.latency_budget_ms / 1000.0 - time.time())
    return Item(message.data, message.tenant, message.message_id, deadline=deadline,
                recipient=message.attributes.get("recipient"), observed_at=published)


def topic_path(settings: Settings, topic: str) -> str:
    return f"projects/{settings.project_id}/topics/{topic}"


class Worker:
    """Everything one function instance loads once: settings, model, clients."""

    def __init__(self, settings: Settings, scorer: Any, publisher: Any, claim_store: Any = None) -> None:
        self.settings = settings
        self.claim_store = claim_store
        self.scorer = scorer
        self.publisher = publisher
        self.verdict_topic = topic_path(settings, settings.verdict_topic)
        self.dead_letter_topic = topic_path(settings, settings.dead_letter_topic)
        self._handled = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Worker:
        from mailscore.cache import BoundedCache
        from mailscore.claimcheck import ObjectStore
        from mailscore.history import HistorySource
        from mailscore.profiles import ProfileStore
        from mailscore.scoring import Scorer

        model, shadow = load_models(settings)
        store = ProfileStore(settings)
        cache = BoundedCache(settings.profile_cache_max_entries, settings.profile_cache_ttl_seconds)
        publisher = DirectPublisher(settings.publish_timeout_seconds)
        log.info("worker ready", extra={"fields": {"model_version": model.version,
                                                   "shadow_model_version": shadow.version if shadow else None}})
        claim_store = ObjectStore(settings.claim_check_location) if settings.claim_check_location else None
        history = HistorySource(store.read, cache, min_timeout_s=settings.history_min_timeout_ms / 1000.0)
        return cls(settings, Scorer(settings, model, history, shadow=shadow), publisher, claim_store)

    def metrics(self) -> dict:
        """Per-instance counters: messages handled and the profile cache's figures."""
        history = getattr(self.scorer, "history", None)
        cache = getattr(history, "cache", None)
        out = {"handled": self._handled}
        if cache is not None:
            out["profile_cache"] = cache.stats().as_dict()
        if history is not None:
            out["bigtable_breaker_open"] = history.breaker.is_open
        return out

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
            item = scoring_item(message, self.settings, self.claim_store)
            verdict = self.scorer.score(item.raw, tenant=item.tenant, message_id=item.message_id, deadline=item.deadline,
                                        recipient=item.recipient, observed_at=item.observed_at)
        except InvalidMessage as exc:
            return self._dead_letter(message.data, message.attributes, message.pubsub_message_id, exc)
        except TransientError as exc:
            log.warning("transient failure, redelivery requested", extra={"fields": self._ids(message, error=str(exc))})
            raise
        except Exception as exc:
            log.error("unexpected scoring failure",
                      extra={"fields": self._ids(message, error=type(exc).__name__, at=_where(exc))})
            raise UnexpectedFailure(type(exc).__name__) from None  # retried; no message, no chain: see the class
        if message.publish_time is not None:
            verdict["timings"]["since_publish_ms"] = round(
                (time.time() - message.publish_time.timestamp()) * 1000.0, 3
            )
        verdict["verdict_id"] = verdict_id(message.tenant, message.message_id, verdict["model_version"])
        attributes = {"tenant": message.tenant, "label": verdict["label"], "message_id": message.message_id,
                      "verdict_id": verdict["verdict_id"]}
        self._publish(self.verdict_topic, json.dumps(verdict, separators=(",", ":")).encode(), attributes)
        self._handled += 1
        if self._handled % METRICS_EVERY == 0:
            log.info("worker metrics", extra={"fields": self.metrics()})
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
        record = dead_letter_attributes(attributes, pubsub_id, exc)
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


class DirectPublisher:
    """One unary Publish RPC per call, on the caller's thread; returns a completed future.

    The client library's batching publisher starts a commit thread for every
    batch, and each request here waits for its own single-message batch: in
    the function that machinery cost about 15% of the CPU of a request
    (py-spy on ``make bench``'s per_message mode). A request that publishes
    one verdict and waits for it needs just the RPC. The emulator is reached
    the way the client library reaches it: ``PUBSUB_EMULATOR_HOST``, plain gRPC.
    """

    def __init__(self, timeout_seconds: float) -> None:
        from google.api_core import retry
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        self.timeout = timeout_seconds
        # Transient failures are retried, but never past the caller's budget: a request
        # whose verdict cannot be published fails in time and Pub/Sub redelivers it.
        self.retry = retry.Retry(predicate=retry.if_transient_error, initial=0.05, maximum=0.5,
                                 timeout=timeout_seconds)
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if emulator:
            import grpc
            from google.auth.credentials import AnonymousCredentials

            transport = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator), credentials=AnonymousCredentials())
            self.client = PublisherClient(transport=transport)
        else:
            self.client = PublisherClient()

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future:
        done: Future = Future()
        try:
            response = self.client.publish(request={"topic": topic, "messages": [{"data": data, "attributes": attributes}]},
                                           retry=self.retry, timeout=self.timeout)
            done.set_result(response.message_ids[0])
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as the library does
            done.set_exception(exc)
        return done


def dead_letter_attributes(attributes: dict[str, str], pubsub_id: str, exc: InvalidMessage) -> dict[str, str]:
    """The dead-letter message's attributes: the original ones plus why (shared by every worker)."""
    return {
        **attributes,
        "reason": exc.reason,
        "stage": exc.stage,
        "detail": exc.detail[:200],
        "pubsub_message_id": pubsub_id,
    }


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


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc`` as ``file.py:line in function``: code, never data."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


def _event_bytes(event: Any) -> bytes:
    """The undecodable event's payload, as bytes, so the dead-letter keeps it."""
    data = getattr(event, "data", event)
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    try:
        return json.dumps(data, default=str).encode()
    except (TypeError, ValueError):
        return repr(data).encode()
