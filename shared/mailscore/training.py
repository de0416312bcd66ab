"""Build a labelled dataset from folders of .eml files and train the model.

Labels come from the folder names: a file under a ``phish``/``phishing``/
``spam`` folder is positive, under ``ham``/``legit``/``safe`` negative.
History features are replayed point-in-time (``profiles.replay``): each
message sees only the messages before it, as it would in production.
``train`` chooses the thresholds by cross-validation at target false-positive
rates and neutralises the ``ARTEFACT_FEATURES`` (see ``evaluation``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mailscore.errors import InvalidMessage, MailscoreError
from mailscore.features import FEATURE_NAMES, SCHEMA_VERSION, extract, message_time, parse_sender
from mailscore.model import CARD_FILE, MODEL_FILE, file_sha256, load_model, version_of
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


def read_labelled(paths: list[str | Path], settings: Settings) -> tuple[list[Path], list[int], list, dict[str, int]]:
    """(files, labels, parsed emails, skipped reasons) for every labelled email under ``paths``."""
    files, labels, parsed = [], [], []
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
        files.append(path)
        labels.append(label)
        parsed.append(msg)
    return files, labels, parsed, skipped


def build_dataset(paths: list[str | Path], settings: Settings, tenant: str = "local") -> Dataset:
    """Parse every labelled email under ``paths`` into features with replayed history."""
    files, labels, parsed, skipped = read_labelled(paths, settings)
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


def fit(X: np.ndarray, y: np.ndarray):
    """One booster with the project's parameters (NaN is missing)."""
    import xgboost as xgb

    matrix = xgb.DMatrix(X, label=y, feature_names=list(FEATURE_NAMES), missing=np.nan)
    return xgb.train(PARAMS, matrix, num_boost_round=ROUNDS)


# Features set to missing (NaN) in training and at serving, because on the
# real corpus they encode how and where mail was collected, not what it is
# (see `mailscore evaluate` and SOURCES.md of the corpus). XGBoost makes no
# split on an all-missing feature, so the model cannot use them.
ARTEFACT_FEATURES: dict[str, str] = {
    "sender_known": "sampling: whether a sender recurs reflects how each source was collected "
                    "(one list archive vs a honeypot); held-out senders are new by construction",
    "sender_msg_count_log": "sampling: as sender_known",
    "sender_days_known": "sampling and era: spans decades across sources",
    "sender_flagged_share": "label replay: the share of a sender's earlier messages labelled phishing",
    "sender_recipients_log": "recipient side: recipients were redacted per source (list address vs user@example.com)",
    "date_skew_hours": "receiving side: the top Received header is the archive's or the honeypot's relay",
    "header_defects": "receiving side and storage: the honeypot's receiving servers add oversized "
                      "X-Microsoft-Antispam headers; the 2002 archive keeps mbox 'From ' lines",
    "mime_parts": "list software: mailman wraps each post in multipart/mixed with a footer part "
                  "(two extra parts on most modern legitimate mail)",
}


def train(
    paths: list[str | Path],
    out_dir: str | Path,
    settings: Settings,
    *,
    neutralised: tuple[str, ...] | None = None,
    folds: int = 5,
) -> dict:
    """Train on the labelled emails under ``paths`` and install the model in ``out_dir``.

    Thresholds and held-out figures come from group k-fold cross-validation
    (no sender or near-identical subject on both sides; see ``evaluation``):
    each threshold is the lowest score whose false-positive rate on
    out-of-fold legitimate mail meets its target. The installed model is then
    fitted on all of the data. The directory is replaced atomically, so a
    running scorer never sees half a model.
    """
    from mailscore import evaluation

    started = time.perf_counter()
    neutralised = tuple(ARTEFACT_FEATURES) if neutralised is None else tuple(neutralised)
    unknown = sorted(set(neutralised) - set(FEATURE_NAMES))
    if unknown:
        raise MailscoreError(f"cannot neutralise unknown features: {', '.join(unknown)}")
    corpus = evaluation.load_corpus(paths, settings)
    y = corpus.labels
    if len(set(y.tolist())) < 2:
        raise MailscoreError(
            "training needs both classes: put emails under phish/ and ham/ folders "
            f"(found {int(y.sum())} phishing, {int((y == 0).sum())} legitimate)"
        )
    cache = evaluation.FeatureCache(corpus, settings)
    cv = evaluation.cross_validate(corpus, cache, folds=folds, neutralised=neutralised)
    chosen = evaluation.thresholds_for_targets(
        y, cv.scores, suspicious_fpr=settings.target_fpr_suspicious, phishing_fpr=settings.target_fpr_phishing
    )
    thresholds = {"suspicious": chosen["suspicious"], "phishing": chosen["phishing"]}
    held = evaluation.summary_metrics(y, cv.scores, (settings.target_fpr_suspicious, settings.target_fpr_phishing))
    X = evaluation.neutralise(cache.matrix(np.ones(len(y), dtype=bool)), neutralised)
    booster = fit(X, y)

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
        "neutralised_features": {name: ARTEFACT_FEATURES.get(name, "neutralised on request") for name in neutralised},
        "thresholds": thresholds,
        "threshold_selection": {k: v for k, v in chosen.items() if k not in ("suspicious", "phishing")},
        "labels": {
            "safe": f"score < {thresholds['suspicious']:.6f}: deliver",
            "suspicious": f"{thresholds['suspicious']:.6f} <= score < {thresholds['phishing']:.6f}: "
                          "deliver with a warning banner or hold for review",
            "phishing": f"score >= {thresholds['phishing']:.6f}: quarantine",
        },
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_data": {
            "sources": [str(Path(p).resolve()) for p in paths],
            "messages": int(len(y)),
            "phishing": int(y.sum()),
            "legitimate": int((y == 0).sum()),
            "by_source": dict(sorted(Counter(corpus.sources).items())),
            "skipped": corpus.skipped,
        },
        "params": PARAMS,
        "rounds": ROUNDS,
        "holdout": {
            "method": f"group {int(cv.folds.max()) + 1}-fold cross-validation over campaign groups, out-of-fold "
                      "scores; the installed model is refitted on all data afterwards",
            "messages": int(len(y)),
            "auc": held["roc_auc"],
            "pr_auc": held["pr_auc"],
            "at_target_fpr": {k: v for k, v in held.items() if k.startswith("at_fpr_")},
            "leakage": {key: sum(fold[key] for fold in cv.leakage) for key in cv.leakage[0]},
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
    log.info("model trained", extra={"fields": {"model_version": card["model_version"], "messages": len(y)}})
    return card


def installed_model(settings: Settings, sources: list[Path] | None = None, say: Callable[[str], None] | None = None):
    """The model in ``settings.model_dir``, trained first on ``sources`` (default data/train) if none is there."""
    model_dir = Path(settings.model_dir)
    if not (model_dir / "model_card.json").exists():
        sources = sources or [Path(__file__).resolve().parents[2] / "data" / "train"]
        (say or (lambda text: print(text, file=sys.stderr)))(
            f"no model in {model_dir}: training one on {', '.join(map(str, sources))}")
        train(sources, model_dir, settings)
    return load_model(model_dir)
