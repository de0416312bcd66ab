"""Score one email: parse, features, sender history, predict, explain, label.

``Scorer`` holds everything loaded once per instance (settings, model,
profile store). ``score`` is pure with respect to its inputs except for the
one Bigtable read, and returns the verdict as a JSON-ready dict: no email
content, no addresses, only identifiers, numbers and feature names.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mailscore.features import FEATURE_NAMES, HISTORY_FEATURES, History, extract, parse_sender
from mailscore.history import HistorySource
from mailscore.model import Model
from mailscore.parse import parse_email
from mailscore.profiles import profile_key, recipient_hash
from mailscore.settings import Settings

LABELS = ("safe", "suspicious", "phishing")
_TRUNCATION_DEFECTS = frozenset(
    {"message_truncated", "header_block_truncated", "headers_truncated", "body_scan_truncated", "mime_parts_truncated"}
)


class Scorer:
    """Scores messages with one model and, optionally, a history source."""

    def __init__(self, settings: Settings, model: Model, history: HistorySource | None = None) -> None:
        self.settings = settings
        self.model = model
        self.history = history
        thresholds = model.thresholds
        self.threshold_suspicious = settings.threshold_suspicious or thresholds["suspicious"]
        self.threshold_phishing = settings.threshold_phishing or thresholds["phishing"]

    def label(self, score: float) -> str:
        if score >= self.threshold_phishing:
            return "phishing"
        if score >= self.threshold_suspicious:
            return "suspicious"
        return "safe"

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
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if deadline is None:
            deadline = time.monotonic() + self.settings.latency_budget_ms / 1000.0
        msg = parse_email(raw, self.settings.limits)
        timings["parse_ms"] = _ms(started)

        degraded: list[str] = []
        sender = parse_sender(msg.get("from"))
        key = profile_key(tenant, sender.address) if sender.address else None
        history: History | None = None
        history_info: dict = {"status": "not_read", "age_s": None}
        step = time.perf_counter()
        if self.history is None:
            degraded.append("history_disabled")
        elif key is None:
            degraded.append("sender_unidentifiable")
        else:
            found = self.history.lookup(key, deadline)
            history_info["status"] = found.status
            if found.snapshot is None:
                degraded.append(f"history_{found.status}")
            else:
                history = found.snapshot.history
                if found.snapshot.updated_at is not None:
                    history_info["age_s"] = round(max(0.0, time.time() - found.snapshot.updated_at), 3)
        timings["history_ms"] = _ms(step)
        if msg.defects & _TRUNCATION_DEFECTS:
            degraded.append("input_truncated")

        step = time.perf_counter()
        row = extract(msg, history, trusted_authserv_ids=self.settings.trusted_authserv_ids, limits=self.settings.limits)
        timings["features_ms"] = _ms(step)

        step = time.perf_counter()
        rows = row.reshape(1, -1)
        score = float(self.model.predict(rows)[0])
        timings["predict_ms"] = _ms(step)

        step = time.perf_counter()
        reasons = self.reasons(rows)[0]
        timings["explain_ms"] = _ms(step)
        timings["total_ms"] = _ms(started)
        if recipient is None:
            recipient = parse_sender(msg.get("to")).address
        return {
            "tenant": tenant,
            "message_id": message_id,
            "label": self.label(score),
            "score": round(score, 6),
            "model_version": self.model.version,
            "sender_known": bool(history is not None and history.msg_count > 0),
            "degraded": bool(degraded),
            "degraded_reasons": degraded,
            "reasons": reasons,
            "history": history_info,
            "profile_key": key,
            "recipient_hash": recipient_hash(recipient),
            "observed_at": round(observed_at if observed_at is not None else time.time(), 3),
            "timings": timings,
        }

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
