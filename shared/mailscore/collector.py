"""Collect verdicts and dead-letter records for published emails, and reconcile.

Used by `make run` and `make chaos`. Every published email is expected to
end as one verdict or one dead-letter record. Repeats of a verdict with the
same ``verdict_id`` (a redelivered message scored twice) are counted as
suppressed duplicates, not as verdicts; an email that has both a verdict and
a dead-letter record (scored, but its acknowledgement was lost until the
subscription gave up) keeps the verdict, and the dead-letter copy is counted
separately.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

DLQ_SOURCE_ATTR = "CloudPubSubDeadLetterSourceDeliveryCount"


@dataclass
class Sent:
    file: str
    message_id: str
    expected: int | None
    published_at: float = 0.0


@dataclass
class Collector:
    sent: dict[str, Sent]
    records: dict[str, dict] = field(default_factory=dict)
    duplicates: int = 0  # verdicts repeated with the same verdict_id
    dead_letter_after_verdict: int = 0
    unknown: int = 0  # records for message ids this run did not publish
    lock: threading.Lock = field(default_factory=threading.Lock)
    progress: object | None = None
    on_record: object | None = None  # callback(record) for live observers

    def __len__(self) -> int:
        with self.lock:
            return len(self.records)

    def add(self, kind: str, data: bytes, attributes: dict[str, str], received_at: float) -> None:
        message_id = attributes.get("message_id", "")
        entry = self.sent.get(message_id)
        with self.lock:
            if entry is None:
                self.unknown += 1
                return
            previous = self.records.get(message_id)
            if kind == "verdict":
                verdict = json.loads(data)
                if previous is not None and previous["status"] == "verdict":
                    self.duplicates += 1
                    return
                if previous is not None:  # a dead-letter copy came first; the verdict wins
                    self.dead_letter_after_verdict += 1
                record = {"file": entry.file, "message_id": message_id, "status": "verdict",
                          **{k: v for k, v in verdict.items() if k != "message_id"}}
            else:
                if previous is not None:
                    if previous["status"] == "verdict":
                        self.dead_letter_after_verdict += 1
                    else:
                        self.duplicates += 1
                    return
                reason = attributes.get("reason") or (
                    "delivery_attempts_exhausted" if DLQ_SOURCE_ATTR in attributes else "unknown")
                record = {"file": entry.file, "message_id": message_id, "status": "dead_letter",
                          "tenant": attributes.get("tenant", ""), "reason": reason,
                          "stage": attributes.get("stage", "delivery"), "detail": attributes.get("detail", "")}
            record["latency_ms"] = round((received_at - entry.published_at) * 1000.0, 3)
            record["received_at"] = received_at
            if entry.expected is not None:
                record["expected"] = "phishing" if entry.expected else "legitimate"
            new = message_id not in self.records
            self.records[message_id] = record
        if new and self.progress is not None:
            self.progress.update(1)
        if self.on_record is not None:
            self.on_record(record)

    def pull_loop(self, subscriber, subscription: str, kind: str, stop: threading.Event) -> None:
        from google.api_core import exceptions as gexc

        while not stop.is_set():
            try:
                response = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=5)
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
                continue
            if not response.received_messages:
                continue
            now = time.time()
            for received in response.received_messages:
                self.add(kind, received.message.data, dict(received.message.attributes), now)
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [r.ack_id for r in response.received_messages]})

    def wait(self, total: int, stall_seconds: float, poll: float = 0.05) -> bool:
        """Until every email has a record (True) or nothing new arrived for ``stall_seconds``."""
        last_count, last_change = -1, time.monotonic()
        while True:
            count = len(self)
            if count >= total:
                return True
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > stall_seconds:
                return False
            time.sleep(poll)


class Collecting:
    """A ``Collector`` fed by two threads pulling the verdict and dead-letter subscriptions, with a progress bar."""

    def __init__(self, sent: list[Sent], verdicts: str, dead_letter: str, *, desc: str, progress: bool) -> None:
        import sys

        from google.cloud import pubsub_v1
        from tqdm import tqdm

        self.bar = tqdm(total=len(sent), desc=desc, unit="msg", disable=not progress, file=sys.stderr)
        self.collector = Collector({entry.message_id: entry for entry in sent}, progress=self.bar)
        self._stop = threading.Event()
        self._subscriber = pubsub_v1.SubscriberClient()
        self._threads = [
            threading.Thread(target=self.collector.pull_loop, args=(self._subscriber, subscription, kind, self._stop),
                             daemon=True)
            for subscription, kind in ((verdicts, "verdict"), (dead_letter, "dead_letter"))
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self.bar.close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._subscriber.close()
