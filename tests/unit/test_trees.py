"""The numpy tree evaluator reproduces the booster's margins bit for bit."""

from __future__ import annotations

import numpy as np

from conftest import TRAIN_DIR
from mailscore.features import FEATURE_NAMES
from mailscore.model import SMALL_BATCH_ROWS
from mailscore.training import build_dataset
from mailscore.trees import TreeEvaluator


def test_evaluator_is_built_for_the_trained_model(model):
    assert model.evaluator is not None
    assert model.evaluator.depth >= 1


def test_single_rows_and_batches_score_identically(model, settings):
    rows = build_dataset([TRAIN_DIR], settings).X
    rng = np.random.default_rng(3)
    noisy = rows + rng.standard_normal(rows.shape).astype(np.float32)
    noisy[rng.random(rows.shape) < 0.3] = np.nan
    for data in (rows, noisy):
        batch = model.predict(data)
        singles = np.concatenate([model.predict(data[i : i + 1]) for i in range(len(data))])
        assert len(data) > SMALL_BATCH_ROWS
        np.testing.assert_array_equal(batch, singles)
        reference = np.asarray(model.booster.inplace_predict(data, validate_features=False), dtype=np.float64)
        np.testing.assert_allclose(batch, reference, rtol=0, atol=1e-6)


def test_evaluator_refuses_a_booster_it_cannot_reproduce(model):
    class Tampered:
        """Claims the trained trees but answers with different margins."""

        def save_raw(self, fmt):
            return model.booster.save_raw(fmt)

        def inplace_predict(self, rows, **kwargs):
            return np.asarray(model.booster.inplace_predict(rows, **kwargs)) + 0.5

    assert TreeEvaluator.from_booster(Tampered(), len(FEATURE_NAMES)) is None


def test_neutralised_columns_are_routed_as_missing_without_masking(model, settings):
    """The evaluator reads the model's neutralised columns as missing, whatever a row holds there."""
    assert model.neutralised and model.evaluator.missing == tuple(model.neutralised)
    rows = build_dataset([TRAIN_DIR], settings).X[:20]
    filled = rows.copy()
    filled[:, model.neutralised] = 1e6  # values that would route differently were they read
    for i in range(len(rows)):
        single = model.predict(filled[i : i + 1])
        np.testing.assert_array_equal(single, model.predict(rows[i : i + 1]))
        masked = rows[i : i + 1].copy()
        masked[:, model.neutralised] = np.nan
        expected = model.booster.inplace_predict(masked, validate_features=False, predict_type="margin")
        np.testing.assert_array_equal(model.margins(filled[i : i + 1]), np.asarray(expected, dtype=np.float32))
