"""The batch scorer gives every message the verdict the function path gives it alone."""

from __future__ import annotations

import pytest

from conftest import TRAIN_DIR
from emails import PHISH, make_email
from mailscore.batch_worker import BatchScorer
from mailscore.envelope import InboundMessage
from mailscore.errors import InvalidMessage, TransientError
from mailscore.features import History
from mailscore.history import HistorySource
from mailscore.profiles import Snapshot, profile_key
from mailscore.scoring import Scorer
from mailscore.training import build_dataset


def _without_timings(verdict: dict) -> dict:
    # Timings differ by nature; observed_at is the publish time the batch path reads from the
    # envelope; verdict_id is added by the worker around the scorer.
    return {k: v for k, v in verdict.items() if k not in ("timings", "observed_at", "verdict_id")}


@pytest.fixture(scope="module")
def histories(settings):
    profiles = build_dataset([TRAIN_DIR], settings, tenant="acme").profiles
    return {key: profile.snapshot() for key, profile in profiles.items()}


def _messages() -> list[InboundMessage]:
    emails = [p.read_bytes() for p in sorted(TRAIN_DIR.rglob("*.eml"))]
    emails += [PHISH, make_email(), make_email(sender="a@one.example, b@two.example")]
    out = [InboundMessage(raw, {"tenant": "acme", "message_id": f"m{i}"}, str(i)) for i, raw in enumerate(emails)]
    out.append(InboundMessage(make_email(), {"message_id": "no-tenant"}, "x1"))
    out.append(InboundMessage(b"\x89PNG\r\n\x1a\n\x00", {"tenant": "acme", "message_id": "binary"}, "x2"))
    return out


@pytest.mark.parametrize("with_history", [True, False])
def test_batch_verdicts_equal_single_verdicts(settings, model, histories, with_history):
    snapshots = {profile_key(t, a): Snapshot(h, None) for (t, a), h in histories.items()}

    def read(key, budget):
        return snapshots.get(key, Snapshot(History(), None))

    def read_many(keys, budget):
        return {key: read(key, budget) for key in keys}

    source = HistorySource(read, None, read_many=read_many) if with_history else None
    scorer = Scorer(settings, model, source)
    batch = BatchScorer(scorer)
    messages = _messages()
    singles = []
    for message in messages:
        try:
            singles.append(scorer.score(message.data, tenant=message.tenant, message_id=message.message_id))
        except InvalidMessage as exc:
            singles.append(exc)
    results = []
    for size in (1, 7, 256):  # batch boundaries must not matter
        results = [r for start in range(0, len(messages), size) for r in batch.score_batch(messages[start:start + size])]
        assert len(results) == len(messages)
        for message, result, single in zip(messages, results, singles):
            if not message.tenant:
                assert result.invalid is not None and result.invalid.reason == "missing_tenant"
            elif isinstance(single, InvalidMessage):
                assert result.verdict is None and result.invalid.reason == single.reason
            else:
                assert _without_timings(result.verdict) == _without_timings(single)
    assert sum(r.verdict is not None and r.verdict["sender_known"] for r in results) > (10 if with_history else -1)
    assert {r.verdict["label"] for r in results if r.verdict} >= {"safe"}


def test_batch_history_failure_degrades_instead_of_failing(settings, model):
    def broken(keys, budget):
        raise TransientError("bigtable read failed: ServiceUnavailable")

    source = HistorySource(lambda key, budget: broken([key], budget), None, read_many=broken)
    results = BatchScorer(Scorer(settings, model, source)).score_batch(_messages()[:5])
    assert all(r.verdict is not None and r.verdict["degraded"] for r in results)
    assert {reason for r in results for reason in r.verdict["degraded_reasons"]} <= {"history_error", "history_circuit_open"}


def test_room_holds_pulls_until_acks_give_room_back():
    import threading

    from mailscore.batch_worker import Room

    room, stop = Room(10), threading.Event()
    assert room.take(10, stop) and room.free == 0
    took = threading.Event()
    waiter = threading.Thread(target=lambda: room.take(4, stop) and took.set())
    waiter.start()
    assert not took.wait(0.3)  # no room: the pull waits
    room.give(3)
    assert not took.wait(0.3)  # still one short
    room.give(1)
    assert took.wait(5)
    waiter.join(5)
    assert room.free == 0
    with pytest.raises(ValueError):
        room.give(11)
    with pytest.raises(ValueError):
        room.take(11, stop)
    stop.set()
    assert room.take(1, stop) is False and room.free == 0  # stopping: nothing taken
