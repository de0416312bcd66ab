"""Score one email: parse, features, sender history, predict, explain, label.

``Scorer`` holds everything loaded once per instance (settings, model,
profile store). ``score`` is pure with respect to its inputs except for the
one Bigtable read, and returns the verdict as a JSON-ready dict: no email
content, no addresses, only identifiers, numbers and feature names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from mailscore.features import FEATURE_NAMES, HISTORY_FEATURES, History, extract, parse_sender
from mailscore.model import Model
from mailscore.parse import parse_email
from mailscore.settings import Settings

LABELS = ("safe", "suspicious", "phishing")
_TRUNCATION_DEFECTS = frozenset(
    {"message_truncated", "header_block_truncated", "headers_truncated", "body_scan_truncated", "mime_parts_truncated"}
)
HistoryLookup = Callable[[str, str], History]


class Scorer:
    """Scores messages with one model and, optionally, a profile store and a shadow model.

    The shadow (a candidate model) scores the same feature row; its score and
    label, from its own card's thresholds, go into the verdict's ``shadow``
    field and never change the live label. A failing shadow is reported in
    that field, not raised.
    """

    def __init__(self, settings: Settings, model: Model, history: HistoryLookup | None = None, *,
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

    def score(self, raw: bytes, *, tenant: str, message_id: str) -> dict:
        """The verdict for ``raw``; raises InvalidMessage (not an email) or TransientError."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        msg = parse_email(raw, self.settings.limits)
        timings["parse_ms"] = _ms(started)

        degraded: list[str] = []
        sender = parse_sender(msg.get("from"))
        history: History | None
        step = time.perf_counter()
        if self.history is None:
            history = None
            degraded.append("history_disabled")
        elif sender.address is None:
            history = None
            degraded.append("sender_unidentifiable")
        else:
            history = self.history(tenant, sender.address)  # TransientError propagates
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

        label = self.label(score)
        step = time.perf_counter()
        # Tree SHAP costs several times a prediction; "flagged" skips it for safe verdicts.
        explain = self.settings.reasons_for == "all" or label != "safe"
        reasons = self.reasons(rows)[0] if explain else []
        timings["explain_ms"] = _ms(step)
        verdict = {
            "tenant": tenant,
            "message_id": message_id,
            "label": label,
            "score": round(score, 6),
            "model_version": self.model.version,
            "sender_known": bool(history is not None and history.msg_count > 0),
            "degraded": bool(degraded),
            "degraded_reasons": degraded,
            "reasons": reasons,
            "timings": timings,
        }
        if self.shadow is not None:
            step = time.perf_counter()
            verdict["shadow"] = self.shadow_verdict(rows)
            timings["shadow_ms"] = _ms(step)
        timings["total_ms"] = _ms(started)
        return verdict

    def shadow_verdict(self, rows: np.ndarray) -> dict:
        """The candidate's score and label for ``rows`` (one message), or the error it raised."""
        shadow = self.shadow
        try:
            score = float(shadow.predict(rows)[0])
            thresholds = shadow.thresholds
            return {"model_version": shadow.version, "score": round(score, 6),
                    "label": _label(score, thresholds["suspicious"], thresholds["phishing"])}
        except Exception as exc:  # noqa: BLE001 - the shadow must never break the live verdict
            return {"model_version": shadow.version, "error": type(exc).__name__}

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
