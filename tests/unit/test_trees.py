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


def test_routing_a_column_as_missing_equals_the_booster_on_nan():
    import xgboost as xgb

    rng = np.random.default_rng(5)
    x = rng.standard_normal((400, 6)).astype(np.float32)
    y = (x[:, 3] + 0.3 * x[:, 1] > 0).astype(np.float32)  # column 3 carries most of the signal
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(x, label=y), num_boost_round=20)
    plain = TreeEvaluator.from_booster(booster, 6)
    routed = TreeEvaluator.from_booster(booster, 6, missing=(3,))
    assert plain is not None and routed is not None  # each reproduced the booster on its own terms
    masked = x.copy()
    masked[:, 3] = np.nan
    expected = np.asarray(booster.inplace_predict(masked, predict_type="margin"), dtype=np.float32)
    got = np.array([routed.margin(row) for row in x], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np.array([plain.margin(row) for row in x], dtype=np.float32))
