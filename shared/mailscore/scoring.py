"""Score one email: parse, features, sender history, predict, explain, label.

``Scorer`` holds everything loaded once per instance (settings, model,
profile store). ``score`` is pure with respect to its inputs except for the
one Bigtable read, and returns the verdict as a JSON-ready dict: no email
content, no addresses, only identifiers, numbers and feature names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from mailscore.features import FEATURE_NAMES, HISTORY_FEATURES, History, extract, parse_sender
from mailscore.history import HistorySource
from mailscore.model import Model
from mailscore.errors import InvalidMessage
from mailscore.parse import parse_email
from mailscore.profiles import profile_key, recipient_hash
from mailscore.settings import Settings

LABELS = ("safe", "suspicious", "phishing")
_TRUNCATION_DEFECTS = frozenset(
    {"message_truncated", "header_block_truncated", "headers_truncated", "body_scan_truncated", "mime_parts_truncated"}
)


@dataclass(frozen=True)
class Item:
    """One message to score: its bytes and what the envelope said about it."""

    raw: bytes
    tenant: str
    message_id: str
    deadline: float | None = None  # time.monotonic() instant for the history lookup
    recipient: str | None = None
    observed_at: float | None = None  # epoch seconds (publish time)


class Scorer:
    """Scores messages with one model and, optionally, a history source and a shadow model.

    The shadow (a candidate model) scores the same feature row; its score and
    label, from its own card's thresholds, go into the verdict's ``shadow``
    field and never change the live label. A failing shadow is reported in
    that field, not raised.
    """

    def __init__(self, settings: Settings, model: Model, history: HistorySource | None = None, *,
                 shadow: Model | None = None) -> None:
        self.settings = settings
        self.model = model
        self.history = history
        self.shadow = shadow
        thresholds = model.thresholds
        self.threshold_suspicious = settings.threshold_suspicious or thresholds["suspicious"]
        self.threshold_phishing = settings.threshold_phishing or thresholds["phishing"]

    def label(self, score: float) -> str:
        return _label(score, self.threshold_suspicious, self.threshold_phishing)

    def score(
        self,
        raw: bytes,
        *,
        tenant: str,
        message_id: str,
        deadline: float | None = None,
        recipient: str | None = None,
        observed_at: float | None = None,
    ) -> dict:
        """The verdict for ``raw``; raises InvalidMessage for input that is not an email.

        ``deadline`` is a ``time.monotonic()`` instant by which the history
        lookup must be done (default: the latency budget from now). History
        that cannot be had in time is left out and the verdict says so.
        """
        outcome = self.score_many([Item(raw, tenant, message_id, deadline, recipient, observed_at)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def score_many(self, items: list[Item]) -> list[dict | Exception]:
        """Verdicts for several messages with one history read and one predict.

        The single-message path is this with one item, so a message gets the
        same verdict alone or in a batch. Each outcome is a verdict, an
        ``InvalidMessage``, or (for an unexpected failure on that message
        alone) the exception, so one bad message never sinks its batch.
        """
        outcomes: list[dict | Exception] = [None] * len(items)  # type: ignore[list-item]
        prepared = []  # (index, msg, key, timings, degraded)
        senders = {}  # index -> Sender, read once for the key and the features
        for index, item in enumerate(items):
            step = time.perf_counter()
            try:
                msg = parse_email(item.raw, self.settings.limits)
                sender = parse_sender(msg.get("from"))
            except InvalidMessage as exc:
                outcomes[index] = exc
                continue
            except Exception as exc:  # noqa: BLE001 - reported per message
                outcomes[index] = exc
                continue
            key = profile_key(item.tenant, sender.address) if sender.address else None
            degraded = []
            if self.history is None:
                degraded.append("history_disabled")
            elif key is None:
                degraded.append("sender_unidentifiable")
            senders[index] = sender
            prepared.append((index, msg, key, {"parse_ms": _ms(step)}, degraded))

        step = time.perf_counter()
        found: dict = {}
        keys = [key for _, _, key, _, _ in prepared if key is not None]
        if self.history is not None and keys:
            deadline = min((items[i].deadline for i, _, k, _, _ in prepared if k is not None and items[i].deadline is not None),
                           default=None)
            if deadline is None:
                deadline = time.monotonic() + self.settings.latency_budget_ms / 1000.0
            found = self.history.lookup_many(keys, deadline)
        history_ms = _ms(step) / max(1, len(prepared))

        rows, kept = [], []
        for index, msg, key, timings, degraded in prepared:
            history: History | None = None
            info: dict = {"status": "not_read", "age_s": None}
            if key is not None and key in found:
                lookup = found[key]
                info["status"] = lookup.status
                if lookup.snapshot is None:
                    degraded.append(f"history_{lookup.status}")
                else:
                    history = lookup.snapshot.history
                    if lookup.snapshot.updated_at is not None:
                        info["age_s"] = round(max(0.0, time.time() - lookup.snapshot.updated_at), 3)
            if msg.defects & _TRUNCATION_DEFECTS:
                degraded.append("input_truncated")
            timings["history_ms"] = round(history_ms, 3)
            step = time.perf_counter()
            try:
                row = extract(msg, history, trusted_authserv_ids=self.settings.trusted_authserv_ids, limits=self.settings.limits,
                              sender=senders[index])
            except Exception as exc:  # noqa: BLE001
                outcomes[index] = exc
                continue
            timings["features_ms"] = _ms(step)
            rows.append(row)
            kept.append((index, msg, key, timings, degraded, history, info))
        if not rows:
            return outcomes

        matrix = np.vstack(rows)
        step = time.perf_counter()
        scores = self.model.predict(matrix)
        predict_ms = _ms(step) / len(rows)
        labels = [self.label(float(score)) for score in scores]
        # Tree SHAP costs several times a prediction; "flagged" skips it for safe verdicts.
        explain = [self.settings.reasons_for == "all" or label != "safe" for label in labels]
        step = time.perf_counter()
        reasons: list[list[dict]] = [[] for _ in rows]
        wanted = [i for i, yes in enumerate(explain) if yes]
        if wanted:
            for i, why in zip(wanted, self.reasons(matrix[wanted])):
                reasons[i] = why
        explain_ms = _ms(step) / len(rows)
        shadow = None
        if self.shadow is not None:
            step = time.perf_counter()
            shadow = self.shadow_verdicts(matrix)
            shadow_ms = _ms(step) / len(rows)
        for position, (index, msg, key, timings, degraded, history, info) in enumerate(kept):
            item = items[index]
            score = float(scores[position])
            recipient = item.recipient if item.recipient is not None else parse_sender(msg.get("to")).address
            timings.update(predict_ms=round(predict_ms, 3), explain_ms=round(explain_ms, 3))
            if len(items) > 1:
                timings["batch_size"] = len(items)
            verdict = {
                "tenant": item.tenant,
                "message_id": item.message_id,
                "label": labels[position],
                "score": round(score, 6),
                "model_version": self.model.version,
                "sender_known": bool(history is not None and history.msg_count > 0),
                "degraded": bool(degraded),
                "degraded_reasons": degraded,
                "reasons": reasons[position],
                "history": info,
                "profile_key": key,
                "recipient_hash": recipient_hash(recipient),
                "observed_at": round(item.observed_at if item.observed_at is not None else time.time(), 3),
                "timings": timings,
            }
            if shadow is not None:
                verdict["shadow"] = shadow[position]
                timings["shadow_ms"] = round(shadow_ms, 3)
            timings["total_ms"] = round(sum(v for k, v in timings.items() if k.endswith("_ms")), 3)
            outcomes[index] = verdict
        return outcomes

    def shadow_verdicts(self, rows: np.ndarray) -> list[dict]:
        """The candidate's score and label per row, or the error it raised (never raised)."""
        shadow = self.shadow
        try:
            scores = shadow.predict(rows)
            thresholds = shadow.thresholds
            return [{"model_version": shadow.version, "score": round(float(score), 6),
                     "label": _label(float(score), thresholds["suspicious"], thresholds["phishing"])} for score in scores]
        except Exception as exc:  # noqa: BLE001 - the shadow must never break the live verdict
            return [{"model_version": shadow.version, "error": type(exc).__name__} for _ in range(len(rows))]

    def reasons(self, rows: np.ndarray) -> list[list[dict]]:
        """Top features pushing each row towards phishing, with signed contributions."""
        contribs = self.model.contributions(rows)
        out = []
        for row, contrib in zip(rows, contribs):
            order = np.argsort(-contrib[:-1])
            picked = []
            for index in order[: self.settings.top_reasons]:
                value = float(contrib[index])
                if value <= 0:
                    break
                picked.append({"code": reason_code(FEATURE_NAMES[index], float(row[index])), "feature": FEATURE_NAMES[index],
                               "contribution": round(value, 4)})
            out.append(picked)
        return out


def _label(score: float, suspicious: float, phishing: float) -> str:
    if score >= phishing:
        return "phishing"
    if score >= suspicious:
        return "suspicious"
    return "safe"


def reason_code(feature: str, value: float) -> str:
    """A short, content-free reason for a feature's push towards phishing."""
    if math.isnan(value):
        return "history_unavailable" if feature in HISTORY_FEATURES else f"{feature}_missing"
    if feature == "sender_known":
        return "new_sender" if value == 0 else "known_sender"
    if feature.endswith("_pass"):
        return feature.replace("_pass", "_not_pass") if value == 0 else feature
    if value == 0:
        if feature.startswith("url_"):
            return "no_links"
        if feature.startswith("attachment_"):
            return "no_attachments"
        return f"no_{feature}"
    return feature


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 3)
