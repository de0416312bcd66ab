"""The XGBoost model and its card: load, verify, warm up, predict, explain.

A model directory holds ``model.ubj`` (XGBoost's binary format) and
``model_card.json``. The card records the feature schema the model was
trained on, the thresholds, the training data's size and held-out figures,
and ``sha256`` of ``model.ubj``; ``model_version`` is derived from that hash,
so two different models never share a version. ``load_model`` refuses a
model whose hash or schema does not match this code. ``load_model_from``
also accepts a ``gs://bucket/prefix`` location, downloaded to a local cache
first. Features the card lists as ``neutralised_features`` are set to missing
before every prediction, as they were in training.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mailscore.errors import ModelError
from mailscore.features import FEATURE_INDEX, FEATURE_NAMES, SCHEMA_VERSION
from mailscore.trees import TreeEvaluator, probability, sigmoid

MODEL_FILE = "model.ubj"
CARD_FILE = "model_card.json"
DEFAULT_THRESHOLDS = {"suspicious": 0.5, "phishing": 0.85}
# Up to this many rows the numpy evaluator beats the booster's fixed per-call cost.
SMALL_BATCH_ROWS = 4


@dataclass
class Model:
    booster: object  # xgboost.Booster
    card: dict
    version: str
    # Bit-identical margins for single rows; None when the booster's trees cannot be
    # reproduced exactly (then every call goes to the booster).
    evaluator: TreeEvaluator | None = field(default=None, repr=False)
    neutralised: list[int] = field(default_factory=list)  # feature columns masked to NaN

    def __post_init__(self) -> None:
        if not self.neutralised:
            self.neutralised = sorted(FEATURE_INDEX[n] for n in self.card.get("neutralised_features", {}) if n in FEATURE_INDEX)

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.card.get("thresholds", DEFAULT_THRESHOLDS))

    def prepare(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` with the neutralised features set to missing (a copy when any are)."""
        if not self.neutralised:
            return rows
        rows = np.array(rows, dtype=np.float32, copy=True)
        rows[:, self.neutralised] = np.nan
        return rows

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Probability of phishing for each row of a 2-D float32 array.

        Every path computes the margin exactly as the booster does and applies
        the same sigmoid, so a message scores the same alone or in a batch.
        """
        few = self._few_margins(rows)
        if few is not None:  # sigmoid, element by element, without building a margin array
            return np.array([probability(margin) for margin in few], dtype=np.float64)
        return sigmoid(self.margins(rows))

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """Log-odds for each row: the tree evaluator for a few rows, the booster for more."""
        few = self._few_margins(rows)
        if few is not None:
            return np.array(few, dtype=np.float32)
        rows = self.prepare(rows)
        margins = self.booster.inplace_predict(rows, validate_features=False, predict_type="margin")
        return np.asarray(margins, dtype=np.float32).reshape(len(rows))

    def _few_margins(self, rows: np.ndarray) -> list[float] | None:
        """The evaluator's margins (floats holding float32 values) when it takes ``rows``, else None."""
        if self.evaluator is None or len(rows) > SMALL_BATCH_ROWS:
            return None
        if self.evaluator.missing != tuple(self.neutralised):
            rows = self.prepare(rows)
        return self.evaluator.margins(rows)

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """Exact tree SHAP values (log-odds), one column per feature plus the bias."""
        import xgboost as xgb

        # Columns are in FEATURE_NAMES order by construction (load_model checks the schema).
        # A DMatrix without feature names, single-threaded, costs a fraction of a named
        # one for the one-row batches the worker explains; the values are identical.
        matrix = xgb.DMatrix(self.prepare(rows), missing=np.nan, nthread=1)
        return self.booster.predict(matrix, pred_contribs=True, validate_features=False)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(model_dir: str | Path) -> Model:
    """Load, verify and warm up the model in ``model_dir``; ModelError says what is wrong."""
    import xgboost as xgb

    directory = Path(model_dir)
    card_path, model_path = directory / CARD_FILE, directory / MODEL_FILE
    if not card_path.is_file() or not model_path.is_file():
        raise ModelError(
            f"no model in {directory}: expected {MODEL_FILE} and {CARD_FILE} "
            "(train one with `mailscore train` or `make train`)"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path} is not readable JSON: {exc}") from exc
    if card.get("schema_version") != SCHEMA_VERSION or tuple(card.get("feature_names", ())) != FEATURE_NAMES:
        raise ModelError(
            f"model in {directory} was built for feature schema {card.get('schema_version')!r}, "
            f"this code computes {SCHEMA_VERSION!r}; retrain it with `make train`"
        )
    digest = file_sha256(model_path)
    if digest != card.get("sha256"):
        raise ModelError(f"{model_path} does not match the sha256 in its card; refusing to load it")
    booster = xgb.Booster()
    try:
        booster.load_model(str(model_path))
    except xgb.core.XGBoostError as exc:
        raise ModelError(f"{model_path} is not an XGBoost model: {exc}") from exc
    booster.set_param({"nthread": 1})
    model = Model(booster, card, card.get("model_version") or version_of(digest))
    model.evaluator = TreeEvaluator.from_booster(booster, len(FEATURE_NAMES), missing=tuple(model.neutralised))
    # Warm up both paths (the booster's first call allocates its predictor).
    warm = np.zeros((SMALL_BATCH_ROWS + 1, len(FEATURE_NAMES)), dtype=np.float32)
    model.predict(warm)
    model.predict(warm[:1])
    return model


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; ModelError if malformed."""
    if not uri.startswith("gs://"):
        raise ModelError(f"not a gs:// URI: {uri!r}")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.match(bucket):
        raise ModelError(f"{uri!r}: {bucket!r} is not a valid Cloud Storage bucket name")
    parts = prefix.split("/") if prefix else []
    if any(part in ("", ".", "..") for part in parts):
        raise ModelError(f"{uri!r}: the object prefix must not contain empty, '.' or '..' segments")
    return bucket, prefix


def resolve_model_dir(location: str | Path, cache_dir: str | Path, *, client_factory: Callable[[], object] | None = None) -> Path:
    """A local folder holding the model at ``location``: the path itself, or a fresh download of a gs:// one.

    ``gs://bucket/prefix`` must hold ``model.ubj`` and ``model_card.json``;
    both are downloaded with google-cloud-storage (default credentials) into
    ``cache_dir/bucket/prefix``, replaced whole, then verified by
    ``load_model`` like any local model. ``client_factory`` is for tests.
    """
    location = str(location)
    if not location.startswith("gs://"):
        return Path(location)
    bucket_name, prefix = parse_gs_uri(location)
    target = Path(cache_dir, bucket_name, *prefix.split("/")) if prefix else Path(cache_dir, bucket_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        if client_factory is None:
            from google.cloud import storage

            client_factory = storage.Client
        bucket = client_factory().bucket(bucket_name)
        for name in (CARD_FILE, MODEL_FILE):
            bucket.blob(f"{prefix}/{name}" if prefix else name).download_to_filename(str(staging / name))
    except Exception as exc:  # noqa: BLE001 - any download failure means no model
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"could not download the model from {location}: {type(exc).__name__}: {exc}") from exc
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def load_model_from(location: str | Path, cache_dir: str | Path, *, client_factory: Callable[[], object] | None = None) -> Model:
    """``load_model`` for a local folder or a gs:// location (see ``resolve_model_dir``)."""
    return load_model(resolve_model_dir(location, cache_dir, client_factory=client_factory))


def version_of(digest: str) -> str:
    return f"xgb-{digest[:12]}"


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties counted half; NaN with one class only."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def precision_recall(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    labels = np.asarray(labels, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    tp = float((labels & flagged).sum())
    precision = tp / flagged.sum() if flagged.sum() else math.nan
    recall = tp / labels.sum() if labels.sum() else math.nan
    return precision, recall
