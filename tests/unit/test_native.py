"""The compiled twins in ``mailscore._native`` equal their pure-Python twins exactly.

Where the extension is built (``pip install -e .`` with a C compiler), the
scoring path uses it; where it is not, the Python twins run. Either way the
results must be the same, so each pair is compared here on real header
blocks (the corpus when present, the shipped emails, the hostile cases) and
on generated ones, and the tree walk on generated rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from conftest import CASES_DIR, CORPUS_DIR, TRAIN_DIR
from mailscore import parse, trees

native = pytest.importorskip(
    "mailscore._native",
    reason="the compiled twins are not built: `pip install -e .` builds them where a C compiler (gcc) and "
           "Cython are available (setup.py); without them the pure-Python twins run",
)

# Bytes that change how a header block splits: line ends, folding, colons, stray controls, 8-bit.
_HEADER_BYTES = st.lists(
    st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"a", b"X-", b"\x0b", b"\x0c", b"\x00", b"\xff",
                     b";", b"=?utf-8?q?x?=", b"From:", b"  \t"]), max_size=40).map(b"".join)


def _real_blocks() -> list[bytes]:
    blocks = []
    for folder in (TRAIN_DIR, CASES_DIR, CORPUS_DIR):
        if folder.is_dir():
            blocks += [p.read_bytes()[:70_000] for p in sorted(folder.rglob("*")) if p.is_file()]
    return blocks


def test_the_scoring_path_uses_the_compiled_twins(model):
    assert parse.split_header_fields is native.split_header_fields
    assert model.evaluator is not None and model.evaluator.native


@pytest.mark.parametrize("max_headers", [512, 3, 0])
def test_header_split_twins_agree_on_real_blocks(max_headers):
    blocks = _real_blocks()
    assert len(blocks) > 20
    for i, block in enumerate(blocks):
        assert native.split_header_fields(block, max_headers) == parse._split_header_fields(block, max_headers), i


@hsettings(max_examples=3000, deadline=None)
@given(_HEADER_BYTES, st.integers(min_value=0, max_value=6))
def test_header_split_twins_agree_on_generated_blocks(block, max_headers):
    assert native.split_header_fields(block, max_headers) == parse._split_header_fields(block, max_headers)


def test_header_split_flags_are_the_python_twins():
    assert (native.CONTINUATION_WITHOUT_FIELD, native.LINE_INVALID, native.HEADERS_TRUNCATED) == (
        parse._CONTINUATION_WITHOUT_FIELD, parse._LINE_INVALID, parse._HEADERS_TRUNCATED)


def test_tree_walk_twins_agree(model):
    evaluator = model.evaluator
    rng = np.random.default_rng(11)
    rows = (rng.standard_normal((3000, evaluator._max_feature + 1)) * 3.0).astype(np.float32)
    rows[rng.random(rows.shape) < 0.25] = np.nan
    rows[:50] = np.round(rows[:50])  # values on split boundaries
    rows[50:60] = np.inf
    rows[60:70] = -np.inf
    for row in rows:
        got = evaluator.margin(row)
        assert got.dtype == np.float32
        assert got == evaluator.numpy_margin(row) or (np.isnan(got) and np.isnan(evaluator.numpy_margin(row)))


def test_tree_walk_falls_back_for_rows_it_does_not_take(model):
    evaluator = model.evaluator
    row = np.zeros(evaluator._max_feature + 1, dtype=np.float64)  # not float32: the numpy twin reads it
    assert evaluator.margin(row) == evaluator.numpy_margin(row)
    assert evaluator.margin(np.zeros(2 * (evaluator._max_feature + 1), dtype=np.float32)[::2]) == \
        evaluator.numpy_margin(np.zeros(evaluator._max_feature + 1, dtype=np.float32))
