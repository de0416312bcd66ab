"""Build a labelled dataset from folders of .eml files and train the model.

Labels come from the folder names: a file under a ``phish``/``phishing``/
``spam`` folder is positive, under ``ham``/``legit``/``safe`` negative.
History features are replayed point-in-time (``profiles.replay``): each
message sees only the messages before it, as it would in production.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mailscore.errors import InvalidMessage, MailscoreError
from mailscore.features import FEATURE_NAMES, SCHEMA_VERSION, extract, message_time, parse_sender
from mailscore.model import CARD_FILE, DEFAULT_THRESHOLDS, MODEL_FILE, auc, file_sha256, precision_recall, version_of
from mailscore.parse import parse_email
from mailscore.profiles import Observation, Profile, replay
from mailscore.settings import Settings

POSITIVE_DIRS = frozenset({"phish", "phishing", "spam", "malicious"})
NEGATIVE_DIRS = frozenset({"ham", "legit", "legitimate", "safe", "benign"})
log = logging.getLogger("mailscore.training")


def label_of(path: Path) -> int | None:
    """1 for a file under a phishing folder, 0 under a legitimate one, else None."""
    for part in reversed(path.parent.parts):
        name = part.lower()
        if name in POSITIVE_DIRS:
            return 1
        if name in NEGATIVE_DIRS:
            return 0
    return None


def find_emails(paths: list[str | Path]) -> list[Path]:
    """Every ``.eml`` file under ``paths`` (files are taken as given), sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.eml") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise MailscoreError(f"{path}: no such file or folder")
    return found


def first_address(value: str | None) -> str | None:
    sender = parse_sender(value)
    return sender.address


@dataclass
class Dataset:
    files: list[Path]
    X: np.ndarray
    y: np.ndarray
    profiles: dict[tuple[str, str], Profile]
    skipped: dict[str, int]


def build_dataset(paths: list[str | Path], settings: Settings, tenant: str = "local") -> Dataset:
    """Parse every labelled email under ``paths`` into features with replayed history."""
    parsed, files, labels = [], [], []
    skipped: dict[str, int] = {}
    for path in find_emails(paths):
        label = label_of(path)
        if label is None:
            skipped["unlabelled"] = skipped.get("unlabelled", 0) + 1
            continue
        try:
            msg = parse_email(path.read_bytes(), settings.limits)
        except InvalidMessage as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        parsed.append(msg)
        files.append(path)
        labels.append(label)
    observations = []
    for msg, label in zip(parsed, labels):
        sender = parse_sender(msg.get("from"))
        when = message_time(msg)
        observations.append(
            Observation(
                tenant,
                sender.address,
                when if when is not None else 0.0,
                bool(label),
                first_address(msg.get("to")),
            )
        )
    histories, profiles = replay(observations)
    rows = [
        extract(msg, history, trusted_authserv_ids=settings.trusted_authserv_ids, limits=settings.limits, now=obs.when or None)
        for msg, history, obs in zip(parsed, histories, observations)
    ]
    X = np.vstack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return Dataset(files, X, np.asarray(labels, dtype=np.int32), profiles, skipped)


PARAMS = {
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 1.0,
    "nthread": 2,
    "seed": 7,
}
ROUNDS = 150


def _fit(X: np.ndarray, y: np.ndarray):
    import xgboost as xgb

    matrix = xgb.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES), missing=np.nan)
    return xgb.train(PARAMS, matrix, num_boost_round=ROUNDS)


def _holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified random held-out mask (a time/sender-aware split is `evaluate`'s job)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        mask[idx[: max(1, int(round(len(idx) * fraction)))] if len(idx) > 1 else []] = True
    return mask


def train(paths: list[str | Path], out_dir: str | Path, settings: Settings) -> dict:
    """Train on the labelled emails under ``paths`` and install the model in ``out_dir``.

    The held-out figures come from a model fitted on 75% of the data; the
    installed model is then refitted on all of it. The directory is replaced
    atomically, so a running scorer never sees half a model.
    """
    started = time.perf_counter()
    data = build_dataset(paths, settings)
    if len(set(data.y.tolist())) < 2:
        raise MailscoreError(
            "training needs both classes: put emails under phish/ and ham/ folders "
            f"(found {int(data.y.sum())} phishing, {int((data.y == 0).sum())} legitimate)"
        )
    held = _holdout(data.y, 0.25, seed=7)
    probe = _fit(data.X[~held], data.y[~held])
    import xgboost as xgb

    held_scores = probe.predict(xgb.DMatrix(data.X[held], feature_names=list(FEATURE_NAMES), missing=np.nan))
    thresholds = dict(DEFAULT_THRESHOLDS)
    precision, recall = precision_recall(data.y[held], held_scores >= thresholds["suspicious"])
    booster = _fit(data.X, data.y)

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    booster.save_model(str(staging / MODEL_FILE))
    digest = file_sha256(staging / MODEL_FILE)
    importance = booster.get_score(importance_type="gain")
    card = {
        "model_version": version_of(digest),
        "sha256": digest,
        "schema_version": SCHEMA_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "thresholds": thresholds,
        "labels": {
            "safe": f"score < {thresholds['suspicious']}",
            "suspicious": f"{thresholds['suspicious']} <= score < {thresholds['phishing']}",
            "phishing": f"score >= {thresholds['phishing']}",
        },
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": {
            "sources": [str(Path(p).resolve()) for p in paths],
            "messages": int(len(data.y)),
            "phishing": int(data.y.sum()),
            "legitimate": int((data.y == 0).sum()),
            "skipped": data.skipped,
        },
        "params": PARAMS,
        "rounds": ROUNDS,
        "holdout": {
            "method": "stratified random 25%, model refitted on all data afterwards",
            "messages": int(held.sum()),
            "auc": _round(auc(data.y[held], held_scores)),
            "precision_at_suspicious": _round(precision),
            "recall_at_suspicious": _round(recall),
        },
        "feature_importance_gain": {k: round(v, 4) for k, v in sorted(importance.items(), key=lambda kv: -kv[1])},
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    if out.exists():
        retired = out.with_name(out.name + ".old")
        shutil.rmtree(retired, ignore_errors=True)
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)
    log.info("model trained", extra={"fields": {"model_version": card["model_version"], "messages": len(data.y)}})
    return card


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)
