"""The micro-batched worker: pull many emails, score them together, publish, then ack.

For when one function call per message is not enough (Cloud Run or GKE,
``functions/score_stream``). Several threads run synchronous ``pull`` calls
on ``Settings.batch_subscription`` (measured: a synchronous pull loop moves
far more messages per second than a streaming pull stream on this client,
and the emulator returns at most 100 messages per call, so several run at
once). Messages are gathered into batches of up to ``batch_max_messages``
or ``max_wait_ms``, whichever comes first; each batch reads every sender
with one Bigtable ``read_rows`` (``ProfileStore.read_many``, through the cache), predicts in
one call and publishes its verdicts through one batching publisher. A
message is acknowledged only once its verdict (or dead-letter record) is
published; a failed publish or Bigtable read releases it for redelivery
(``modify_ack_deadline`` 0), like the function path's raise.

``BatchScorer.score_batch`` gives every message the verdict
``Scorer.score`` gives it alone (the test ``test_batch_worker`` compares
them on the shipped emails); invalid input is dead-lettered with the same
attributes as ``worker.Worker`` does.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mailscore import envelope
from mailscore.errors import InvalidMessage, TransientError
from mailscore.scoring import Scorer
from mailscore.settings import Settings
from mailscore.worker import dead_letter_attributes, scoring_item, topic_path, verdict_id

log = logging.getLogger("mailscore.batch_worker")


@dataclass
class Scored:
    """One message's outcome in a batch: a verdict, or the reason it is invalid."""

    message: envelope.InboundMessage
    verdict: dict | None = None
    invalid: InvalidMessage | None = None
    failed: str | None = None  # unexpected error type: released for redelivery


class BatchScorer:
    """``Scorer.score_many`` for pulled messages: envelope checks, claim-checks, verdict ids.

    The scoring itself is the same code the function path runs (``score``
    is ``score_many`` with one item), so a message gets the same verdict
    either way.
    """

    def __init__(self, scorer: Scorer, claim_store: Any = None) -> None:
        self.scorer = scorer
        self.claim_store = claim_store

    def score_batch(self, messages: list[envelope.InboundMessage]) -> list[Scored]:
        settings = self.scorer.settings
        results = [Scored(m) for m in messages]
        items, owners = [], []
        for result in results:
            try:
                items.append(scoring_item(result.message, settings, self.claim_store))
            except InvalidMessage as exc:
                result.invalid = exc
                continue
            except TransientError:
                result.failed = "TransientError"
                continue
            owners.append(result)
        for result, outcome in zip(owners, self.scorer.score_many(items) if items else []):
            if isinstance(outcome, InvalidMessage):
                result.invalid = outcome
            elif isinstance(outcome, Exception):
                result.failed = type(outcome).__name__
            else:
                outcome["verdict_id"] = verdict_id(result.message.tenant, result.message.message_id, outcome["model_version"])
                result.verdict = outcome
        return results


def from_received(message: Any) -> envelope.InboundMessage:
    """A pulled ``PubsubMessage`` as an InboundMessage (attributes capped as for push)."""
    cap = envelope.MAX_ATTRIBUTE_CHARS
    attributes = {str(k)[:cap]: str(v)[:cap] for k, v in message.attributes.items()}
    publish_time = message.publish_time if message.publish_time and message.publish_time.timestamp() > 0 else None
    return envelope.InboundMessage(bytes(message.data), attributes, str(message.message_id), publish_time)


class Room:
    """Flow control: at most ``capacity`` messages pulled and not yet acked or released.

    Counted, not one semaphore unit per message: a pull takes room for all it
    asks for at once, and an ack flush gives back what it settled at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        return self._free

    def take(self, count: int, stop: threading.Event) -> bool:
        """Wait until ``count`` are free and take them; False (nothing taken) once ``stop`` is set."""
        if count > self.capacity:
            raise ValueError(f"cannot take {count} of a room of {self.capacity}")
        with self._changed:
            while self._free < count:
                if stop.is_set():
                    return False
                self._changed.wait(0.1)
            self._free -= count
            return True

    def give(self, count: int) -> None:
        if count <= 0:
            return
        with self._changed:
            if self._free + count > self.capacity:
                raise ValueError("gave back more room than was taken")
            self._free += count
            self._changed.notify_all()


@dataclass
class _Pending:
    """Publishes still in flight for one batch; acks or releases when they settle."""

    outstanding: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class BatchWorker:
    """Pull, batch, score, publish, ack; ``run`` until ``stop`` (then drain)."""

    def __init__(self, settings: Settings, batch_scorer: BatchScorer, subscriber: Any, publisher: Any, *,
                 subscription: str, pull_threads: int = 4, max_wait_ms: float = 20.0,
                 max_outstanding: int = 4096, pull_max_messages: int = 1000) -> None:
        self.settings = settings
        self.batch_scorer = batch_scorer
        self.subscriber = subscriber
        self.publisher = publisher
        self.subscription = subscription
        self.pull_threads = pull_threads
        self.max_wait_seconds = max_wait_ms / 1000.0
        self.pull_max_messages = min(pull_max_messages, max_outstanding)
        self.verdict_topic = topic_path(settings, settings.verdict_topic)
        self.dead_letter_topic = topic_path(settings, settings.dead_letter_topic)
        self._inbox: queue.Queue = queue.Queue()
        self._room = Room(max_outstanding)
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._ack_lock = threading.Lock()
        self._in_flight = 0
        self._in_flight_lock = threading.Condition()
        self.stop_event = threading.Event()
        self.counts = {"verdicts": 0, "dead_lettered": 0, "released": 0, "batches": 0}

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> BatchWorker:
        from google.cloud import pubsub_v1

        from mailscore.cache import BoundedCache
        from mailscore.claimcheck import ObjectStore
        from mailscore.history import HistorySource
        from mailscore.profiles import ProfileStore
        from mailscore.topology import subscription_path
        from mailscore.worker import load_models

        model, shadow = load_models(settings)
        store = ProfileStore(settings)
        cache = BoundedCache(settings.profile_cache_max_entries, settings.profile_cache_ttl_seconds)
        history = HistorySource(store.read, cache, min_timeout_s=settings.history_min_timeout_ms / 1000.0,
                                read_many=store.read_many)
        claim_store = ObjectStore(settings.claim_check_location) if settings.claim_check_location else None
        publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=4 * 1024 * 1024,
                                                         max_latency=0.005),
            publisher_options=pubsub_v1.types.PublisherOptions(flow_control=pubsub_v1.types.PublishFlowControl(
                message_limit=10_000, byte_limit=64 * 1024 * 1024,
                limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK)),
        )
        subscriber = pubsub_v1.SubscriberClient()
        subscription = options.pop("subscription", None) or subscription_path(settings, settings.batch_subscription)
        log.info("batch worker ready", extra={"fields": {"model_version": model.version}})
        return cls(settings, BatchScorer(Scorer(settings, model, history, shadow=shadow), claim_store), subscriber,
                   publisher, subscription=subscription, **options)

    # --- the loop ---

    def run(self, *, seconds: float | None = None) -> dict:
        """Work until ``stop_event`` is set (or ``seconds`` pass), then drain; returns the counts."""
        threads = [threading.Thread(target=self._pull_loop, name=f"pull-{i}", daemon=True)
                   for i in range(self.pull_threads)]
        threads.append(threading.Thread(target=self._ack_loop, name="ack", daemon=True))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + seconds if seconds else None
        while not self.stop_event.is_set() or not self._inbox.empty():
            if deadline is not None and time.monotonic() >= deadline:
                self.stop_event.set()
            batch = self._gather()
            if batch:
                self._process(batch)
        self._drain()
        for thread in threads:
            thread.join(timeout=10)
        return dict(self.counts)

    def stop(self) -> None:
        self.stop_event.set()

    def _pull_loop(self) -> None:
        from google.api_core import exceptions as gexc

        want = self.pull_max_messages
        while not self.stop_event.is_set():
            # Flow control: take room for a full pull before asking for it.
            if not self._room.take(want, self.stop_event):
                return
            try:
                response = self.subscriber.pull(
                    request={"subscription": self.subscription, "max_messages": want}, timeout=5)
                received = list(response.received_messages)
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.InternalServerError):
                received = []
            except Exception as exc:  # noqa: BLE001 - keep pulling; log the kind only
                log.warning("pull failed", extra={"fields": {"error": type(exc).__name__}})
                received = []
                time.sleep(0.5)
            self._room.give(want - len(received))
            for item in received:
                self._inbox.put(item)

    def _gather(self) -> list:
        try:
            first = self._inbox.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        limit = self.settings.batch_max_messages
        deadline = time.monotonic() + self.max_wait_seconds
        while len(batch) < limit:
            try:
                batch.append(self._inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _process(self, received: list) -> None:
        self.counts["batches"] += 1
        messages = [from_received(item.message) for item in received]
        ack_ids = [item.ack_id for item in received]
        try:
            # Empty data is what a push envelope rejects as data_missing: dead-lettered below.
            results = self.batch_scorer.score_batch([m for m in messages if m.data])
        except TransientError as exc:
            log.warning("transient failure, batch released", extra={"fields": {"error": str(exc), "size": len(received)}})
            self._settle(ack_ids, ok=False)
            self.counts["released"] += len(ack_ids)
            return
        by_message = {id(r.message): r for r in results}
        for message, ack_id in zip(messages, ack_ids):
            result = by_message.get(id(message))
            if result is None:  # no data at all
                self._dead_letter(message, InvalidMessage("data_missing", "the message carries no data"), ack_id)
            elif result.invalid is not None:
                self._dead_letter(message, result.invalid, ack_id)
            elif result.failed is not None:
                log.error("unexpected scoring failure", extra={"fields": {
                    "tenant": message.tenant, "message_id": message.message_id, "error": result.failed}})
                self._settle([ack_id], ok=False)
                self.counts["released"] += 1
            else:
                verdict = result.verdict
                if message.publish_time is not None:
                    verdict["timings"]["since_publish_ms"] = round(
                        (time.time() - message.publish_time.timestamp()) * 1000.0, 3)
                attributes = {"tenant": message.tenant, "label": verdict["label"], "message_id": message.message_id}
                if "verdict_id" in verdict:
                    attributes["verdict_id"] = verdict["verdict_id"]
                self._publish(self.verdict_topic, json.dumps(verdict, separators=(",", ":")).encode(), attributes,
                              ack_id, "verdicts")

    def _dead_letter(self, message: envelope.InboundMessage, exc: InvalidMessage, ack_id: str) -> None:
        record = dead_letter_attributes(message.attributes, message.pubsub_message_id, exc)
        log.warning("dead-lettered", extra={"fields": {"tenant": message.tenant, "message_id": message.message_id,
                                                       "reason": exc.reason, "stage": exc.stage}})
        self._publish(self.dead_letter_topic, message.data or b"-", record, ack_id, "dead_lettered")

    def _publish(self, topic: str, data: bytes, attributes: dict[str, str], ack_id: str, kind: str) -> None:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            future = self.publisher.publish(topic, data, **attributes)
        except Exception:  # noqa: BLE001 - released for redelivery
            self._publish_done(ack_id, kind, ok=False)
            return

        def done(fut) -> None:
            self._publish_done(ack_id, kind, ok=fut.exception() is None)

        future.add_done_callback(done)

    def _publish_done(self, ack_id: str, kind: str, *, ok: bool) -> None:
        self._settle([ack_id], ok=ok)
        with self._in_flight_lock:
            self._in_flight -= 1
            self.counts[kind if ok else "released"] += 1
            self._in_flight_lock.notify_all()

    def _settle(self, ack_ids: list[str], *, ok: bool) -> None:
        with self._ack_lock:
            (self._acks if ok else self._nacks).extend(ack_ids)

    def _ack_loop(self) -> None:
        while not self.stop_event.is_set():
            time.sleep(0.02)
            self._flush_acks()

    def _flush_acks(self) -> None:
        with self._ack_lock:
            acks, self._acks = self._acks, []
            nacks, self._nacks = self._nacks, []
        for start in range(0, len(acks), 1000):
            chunk = acks[start : start + 1000]
            try:
                self.subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": chunk})
            except Exception as exc:  # noqa: BLE001 - unacked messages are redelivered: at-least-once
                log.warning("ack failed", extra={"fields": {"error": type(exc).__name__, "count": len(chunk)}})
        for start in range(0, len(nacks), 1000):
            chunk = nacks[start : start + 1000]
            try:
                self.subscriber.modify_ack_deadline(request={"subscription": self.subscription, "ack_ids": chunk,
                                                             "ack_deadline_seconds": 0})
            except Exception as exc:  # noqa: BLE001
                log.warning("release failed", extra={"fields": {"error": type(exc).__name__, "count": len(chunk)}})
        self._room.give(len(acks) + len(nacks))

    def _drain(self) -> None:
        """Wait for every publish in flight, then send the last acks."""
        with self._in_flight_lock:
            self._in_flight_lock.wait_for(lambda: self._in_flight == 0, timeout=self.settings.publish_timeout_seconds)
        self._flush_acks()


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)
