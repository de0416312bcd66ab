"""The batch scorer gives every message the verdict the function path gives it alone."""

from __future__ import annotations

import pytest

from conftest import TRAIN_DIR
from emails import PHISH, make_email
from mailscore.batch_worker import BatchScorer
from mailscore.envelope import InboundMessage
from mailscore.errors import InvalidMessage, TransientError
from mailscore.features import History
from mailscore.scoring import Scorer
from mailscore.training import build_dataset


def _without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k != "timings"}


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
    def lookup(tenant, address):
        return histories.get((tenant, address), History())

    def lookup_many(pairs):
        return {pair: lookup(*pair) for pair in pairs}

    scorer = Scorer(settings, model, lookup if with_history else None)
    batch = BatchScorer(scorer, lookup_many if with_history else None)
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


def test_batch_history_failure_fails_the_batch(settings, model):
    def broken(pairs):
        raise TransientError("bigtable read failed: DeadlineExceeded")

    batch = BatchScorer(Scorer(settings, model, lambda t, a: History()), broken)
    with pytest.raises(TransientError):
        batch.score_batch(_messages()[:5])
