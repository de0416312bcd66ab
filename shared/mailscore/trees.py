"""A numpy evaluator for a booster's trees: one row in tens of microseconds.

XGBoost's ``inplace_predict`` costs about 0.3 ms per call on one row, most of
it fixed overhead, which is more than the rest of scoring a message. This
evaluator flattens every tree into arrays once, then scores a row by
comparing all split conditions at once and following the child pointers
for as many steps as the deepest tree. The margin is accumulated in
float32 in tree order from the base margin, as XGBoost does, so the result
is bit-identical; ``TreeEvaluator.from_booster`` checks that against the
booster on probe rows and returns None when it cannot promise it
(categorical splits, several outputs, an objective it does not know).
"""

from __future__ import annotations

import json
import math

import numpy as np

from mailscore.twins import twin

CompiledTrees = twin("CompiledTrees", None)  # the compiled twin of ``TreeEvaluator.numpy_margin``

_SUPPORTED_OBJECTIVES = frozenset({"binary:logistic", "reg:logistic"})


class TreeEvaluator:
    """Margins of single rows, equal bit for bit to the booster's own."""

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, go_left_default: np.ndarray,
                 left: np.ndarray, right: np.ndarray, roots: np.ndarray, depth: int, base_margin: np.float32) -> None:
        self.feature = feature
        self.threshold = threshold
        self.go_left_default = go_left_default
        self.left = left
        self.right = right
        self.roots = roots
        self.depth = depth
        self.base_margin = np.float32(base_margin)
        self._start = np.concatenate(([base_margin], np.zeros(len(roots), dtype=np.float32))).astype(np.float32)
        self.missing: tuple[int, ...] = ()  # columns read as missing whatever the row holds
        self.native = CompiledTrees is not None  # margin() walks the trees in compiled code
        self._compiled = None  # the CompiledTrees of the current arrays, built at first use
        self._max_feature = int(feature.max()) if len(feature) else -1

    def _compile(self):
        self._compiled = CompiledTrees(
            np.ascontiguousarray(self.feature, dtype=np.intp), np.ascontiguousarray(self.threshold, dtype=np.float32),
            np.ascontiguousarray(self.go_left_default, dtype=np.uint8), np.ascontiguousarray(self.left, dtype=np.intp),
            np.ascontiguousarray(self.right, dtype=np.intp), np.ascontiguousarray(self.roots, dtype=np.intp),
            int(self.depth), float(self.base_margin))
        return self._compiled

    def treat_as_missing(self, columns: tuple[int, ...]) -> None:
        """Route every split on ``columns`` down its missing-value branch, whatever the row holds.

        A split on such a column then has one child for both outcomes, so its
        value is never read: the same margins as the booster on rows with those
        columns set to NaN, without masking each row.
        """
        split = (self.left != np.arange(len(self.left))) & np.isin(self.feature, columns)
        branch = np.where(self.go_left_default, self.left, self.right)
        self.left = np.where(split, branch, self.left)
        self.right = np.where(split, branch, self.right)
        self.missing = tuple(sorted(columns))
        self._compiled = None

    @classmethod
    def from_booster(cls, booster, n_features: int, *, missing: tuple[int, ...] = (), probes: int = 512,
                     seed: int = 0) -> TreeEvaluator | None:
        """Flatten ``booster``; None unless it reproduces the booster's margins exactly.

        ``missing`` columns are read as missing (see ``treat_as_missing``); the
        check then compares with the booster on rows where they are NaN.
        """
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        if learner["objective"]["name"] not in _SUPPORTED_OBJECTIVES:
            return None
        booster_model = learner["gradient_booster"].get("model", {})
        trees = booster_model.get("trees")
        if not trees or any(info != 0 for info in booster_model.get("tree_info", [])):
            return None
        if any(any(t.get("split_type", [])) for t in trees):
            return None  # categorical splits
        evaluator = cls._flatten(trees, _base_margin(learner))
        if evaluator is not None and missing:
            evaluator.treat_as_missing(missing)
        if evaluator is None or not evaluator.matches(booster, n_features, probes, seed):
            return None
        return evaluator

    @classmethod
    def _flatten(cls, trees: list[dict], base_margin: np.float32) -> TreeEvaluator | None:
        feature, threshold, default, left, right, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for tree in trees:
            lc = np.asarray(tree["left_children"], dtype=np.intp)
            rc = np.asarray(tree["right_children"], dtype=np.intp)
            n = len(lc)
            leaf = lc == -1
            ids = np.arange(n, dtype=np.intp) + offset
            # A leaf points at itself, so extra steps for shallower trees are no-ops.
            left.append(np.where(leaf, ids, lc + offset))
            right.append(np.where(leaf, ids, rc + offset))
            feature.append(np.where(leaf, 0, np.asarray(tree["split_indices"], dtype=np.intp)))
            threshold.append(np.asarray(tree["split_conditions"], dtype=np.float32))
            default.append(np.asarray(tree["default_left"], dtype=bool))
            roots.append(offset)
            depth = max(depth, _tree_depth(lc, rc))
            offset += n
        return cls(np.concatenate(feature), np.concatenate(threshold), np.concatenate(default),
                   np.concatenate(left), np.concatenate(right), np.asarray(roots, dtype=np.intp), depth, base_margin)

    def margin(self, row: np.ndarray) -> np.float32:
        """The raw score (log-odds) of one 1-D float32 row (compiled when built, else numpy)."""
        return np.float32(self.margins(row.reshape(1, -1))[0])

    def margins(self, rows: np.ndarray) -> list[float]:
        """``margin`` of each row of a 2-D array, as floats holding the float32 values."""
        if (self.native and rows.dtype == np.float32 and rows.ndim == 2 and rows.flags.c_contiguous
                and rows.shape[1] > self._max_feature):
            return (self._compiled or self._compile()).margins(rows)
        return [float(self.numpy_margin(row)) for row in rows]

    def numpy_margin(self, row: np.ndarray) -> np.float32:
        """The Python twin of the compiled walk: every split compared at once, then the pointers followed."""
        x = row[self.feature]
        go_left = np.where(np.isnan(x), self.go_left_default, x < self.threshold)  # comparing NaN does not warn
        step = np.where(go_left, self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = step[node]
        terms = self._start.copy()
        terms[1:] = self.threshold[node]  # a leaf's split_condition holds its value
        return np.add.accumulate(terms, dtype=np.float32)[-1]

    def matches(self, booster, n_features: int, probes: int, seed: int) -> bool:
        rng = np.random.default_rng(seed)
        rows = (rng.standard_normal((probes, n_features)) * 3.0).astype(np.float32)
        rows[rng.random(rows.shape) < 0.2] = np.nan
        rows[: min(probes, 4)] = np.round(rows[: min(probes, 4)])  # values on split boundaries too
        rows[0] = 0.0
        got = np.array([self.margin(row) for row in rows], dtype=np.float32)  # before masking: it must not matter
        rows[:, list(self.missing)] = np.nan
        expected = np.asarray(booster.inplace_predict(rows, validate_features=False, predict_type="margin"),
                              dtype=np.float32).reshape(-1)
        return bool(np.array_equal(expected, got))


def sigmoid(margin: np.ndarray | float) -> np.ndarray:
    """Probability from log-odds in float64, the same function for every path.

    Element by element with ``math.exp``: for the one or few rows a message
    brings, a numpy ufunc chain costs more than the trees themselves.
    """
    values = np.asarray(margin, dtype=np.float64)
    return np.array([probability(value) for value in values.ravel().tolist()], dtype=np.float64).reshape(values.shape)


def probability(margin: float) -> float:
    """``sigmoid`` of one margin, the function it applies to each element."""
    if margin < -700.0:  # exp would overflow; the probability is 0.0 in float64 from here on
        return 0.0
    return 1.0 / (1.0 + math.exp(-margin))


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = np.zeros(len(left), dtype=np.intp)
    for node in range(len(left)):  # XGBoost numbers children after their parent
        if left[node] != -1:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return int(depth.max()) if len(depth) else 0


def _base_margin(learner: dict) -> np.float32:
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]").split(",")[0]
    base = np.float32(float(raw))
    with np.errstate(divide="ignore"):
        return np.float32(-np.log(np.float32(1.0) / base - np.float32(1.0)))
