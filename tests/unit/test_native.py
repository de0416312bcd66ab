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
from mailscore import mime, parse, urls
from mailscore.errors import InvalidMessage

native = pytest.importorskip(
    "mailscore._native",
    reason="the compiled twins are not built: `pip install -e .` builds them where a C compiler (gcc) and "
           "Cython are available (setup.py); without them the pure-Python twins run",
)

# Bytes that change how a header block splits and decodes: line ends, folding, colons, stray
# controls, 8-bit and invalid UTF-8, encoded words.
_HEADER_BYTES = st.lists(
    st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"a", b"X-", b"\x0b", b"\x0c", b"\x00", b"\xff",
                     b";", b"=?utf-8?q?x?=", b"=?x?b?QUJD?=", b"=?utf-8?q?a=0Ab?=", b"From:", b"Subject: ", b"  \t",
                     b"\xc3\xa9", b"\xef\xbf\xbd", b"x" * 12]), max_size=40).map(b"".join)


def _real_blocks() -> list[bytes]:
    blocks = []
    for folder in (TRAIN_DIR, CASES_DIR, CORPUS_DIR):
        if folder.is_dir():
            blocks += [p.read_bytes()[:70_000] for p in sorted(folder.rglob("*")) if p.is_file()]
    return blocks


def test_the_scoring_path_uses_the_compiled_twins(model):
    assert urls.strip_tags is native.strip_tags
    assert parse.collapse_semicolon_runs is native.collapse_semicolon_runs
    assert parse.nth_boundary_param is native.nth_boundary_param
    assert mime.odd_line_breaks is native.odd_line_breaks
    assert parse._decode is native.decode_words
    assert parse._read_fields is native.read_header_fields
    assert urls.without_hidden is native.without_hidden
    assert urls.count_forms_scripts is native.count_forms_scripts
    assert urls.replace_common_references is native.replace_common_references
    assert model.evaluator is not None and model.evaluator.native


def _read_by_both(block: bytes, max_headers: int, max_chars: int):
    ours, theirs = set(), set()
    return ((native.read_header_fields(block, max_headers, max_chars, ours, parse._word_codec), ours),
            (parse._read_header_fields(block, max_headers, max_chars, theirs, parse._word_codec), theirs))


@pytest.mark.parametrize(("max_headers", "max_chars"), [(512, 4096), (512, 10), (3, 4096), (0, 4096)])
def test_header_reading_twins_agree_on_real_blocks(max_headers, max_chars):
    blocks = _real_blocks()
    assert len(blocks) > 20
    for i, block in enumerate(blocks):
        compiled, python = _read_by_both(block, max_headers, max_chars)
        assert compiled == python, i


@hsettings(max_examples=5000, deadline=None)
@given(_HEADER_BYTES, st.integers(min_value=0, max_value=6), st.sampled_from([4096, 8, 0]))
def test_header_reading_twins_agree_on_generated_blocks(block, max_headers, max_chars):
    compiled, python = _read_by_both(block, max_headers, max_chars)
    assert compiled == python


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


def test_tree_walk_twins_agree_on_row_batches(model):
    evaluator = model.evaluator
    rng = np.random.default_rng(12)
    rows = (rng.standard_normal((64, evaluator._max_feature + 1)) * 3.0).astype(np.float32)
    rows[rng.random(rows.shape) < 0.25] = np.nan
    compiled = evaluator.margins(rows)
    assert compiled == [float(evaluator.numpy_margin(row)) for row in rows]
    assert compiled == evaluator.margins(rows.astype(np.float64))  # taken by the numpy twin


def test_compiled_trees_refuse_arrays_pointing_outside():
    ok = dict(feature=np.zeros(3, dtype=np.intp), threshold=np.zeros(3, dtype=np.float32),
              go_left_default=np.zeros(3, dtype=np.uint8), left=np.array([1, 1, 2], dtype=np.intp),
              right=np.array([2, 1, 2], dtype=np.intp), roots=np.zeros(1, dtype=np.intp))
    assert native.CompiledTrees(*ok.values(), 1, 0.0).margin(np.ones(1, dtype=np.float32)) == 0.0
    for name, bad in (("left", np.array([1, 5, 2])), ("right", np.array([-1, 1, 2])), ("roots", np.array([3]))):
        arrays = dict(ok, **{name: bad.astype(np.intp)})
        with pytest.raises(ValueError):
            native.CompiledTrees(*arrays.values(), 1, 0.0)
    with pytest.raises(ValueError):
        native.CompiledTrees(*ok.values(), 1, 0.0).margin(np.ones(0, dtype=np.float32))


def test_tree_walk_falls_back_for_rows_it_does_not_take(model):
    evaluator = model.evaluator
    row = np.zeros(evaluator._max_feature + 1, dtype=np.float64)  # not float32: the numpy twin reads it
    assert evaluator.margin(row) == evaluator.numpy_margin(row)
    assert evaluator.margin(np.zeros(2 * (evaluator._max_feature + 1), dtype=np.float32)[::2]) == \
        evaluator.numpy_margin(np.zeros(evaluator._max_feature + 1, dtype=np.float32))


def _real_html() -> list[str]:
    """The HTML parts of the real emails, as the parser gives them to the HTML reader."""
    found = []
    for block in _real_blocks():
        try:
            html = parse.parse_email(block).html
        except InvalidMessage:
            continue
        if html:
            found.append(html)
    return found


# Characters that decide where a tag starts and ends, and ones Python's re treats specially.
_HTML_TEXT = st.lists(st.sampled_from(["<", ">", "/", "a", "Z", "!", "?", " ", "\n", "\u017f", "\u212a", "\xe9",
                                       "<a", "</b", "<!--", "-->", "x" * 4100, "\U0001f600"]), max_size=30).map("".join)


def test_tag_strip_twins_agree_on_real_html():
    htmls = _real_html()
    assert htmls
    for i, html in enumerate(htmls):
        assert native.strip_tags(html) == urls._strip_tags(html), i


@hsettings(max_examples=3000, deadline=None)
@given(_HTML_TEXT)
def test_tag_strip_twins_agree_on_generated_text(text):
    assert native.strip_tags(text) == urls._strip_tags(text)


# Bytes that decide the body scans: separators, folds, boundary parameters, odd line breaks.
_BODY_BYTES = st.lists(st.sampled_from([b";", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\n ", b"\r\n\t", b";" * 16,
                                        b"boundary", b"BOUNDARY", b"BoUnDaRy", b"=", b" =", b"\x0b", b"\x0c",
                                        b"\x1c", b"\x1e", b"\x85", b"x", b"\xff"]), max_size=40).map(b"".join)


def _real_bodies() -> list[bytes]:
    return [block.partition(b"\n\n")[2] or block for block in _real_blocks()]


def test_body_scan_twins_agree_on_real_bodies():
    for i, body in enumerate(_real_bodies()):
        assert native.collapse_semicolon_runs(body) == parse._collapse_semicolon_runs(body), i
        for allowed in (16, 1, 0):
            assert native.nth_boundary_param(body, allowed) == parse._nth_boundary_param(body, allowed), (i, allowed)
        assert native.odd_line_breaks(body) == mime._odd_line_breaks(body), i


@hsettings(max_examples=4000, deadline=None)
@given(_BODY_BYTES, st.integers(min_value=0, max_value=3))
def test_body_scan_twins_agree_on_generated_bodies(body, allowed):
    assert native.collapse_semicolon_runs(body) == parse._collapse_semicolon_runs(body)
    assert native.nth_boundary_param(body, allowed) == parse._nth_boundary_param(body, allowed)
    assert native.odd_line_breaks(body) == mime._odd_line_breaks(body)


# Pieces of encoded words, whole and broken: charsets, encodings, payloads, separators, Unicode spaces.
_WORD_TEXT = st.lists(st.sampled_from(["=?", "?=", "utf-8", "?q?", "?B?", "?b?", "=FF", "=0A", "=00", "_", "QUJD",
                                       "QUI", "a", " ", "\u3000", "\x85", "?", "=", "iso-8859-1", "x" * 70, "rot13",
                                       "\n", "\xe9", "*fr"]), max_size=16).map("".join)


def _decoded_by_both(value: str):
    ours, theirs = set(), set()
    return (native.decode_words(value, ours, parse._word_codec), ours), (parse._decode_words(value, theirs, parse._word_codec), theirs)


def test_encoded_word_twins_agree_on_real_headers():
    values = [value.decode("utf-8", "replace") for block in _real_blocks()
              for _, value in parse._split_header_fields(block.partition(b"\n\n")[0], 512, set())]
    encoded = [value for value in values if "=?" in value]
    assert encoded
    for value in encoded:
        compiled, python = _decoded_by_both(value)
        assert compiled == python, value[:80]


@hsettings(max_examples=4000, deadline=None)
@given(_WORD_TEXT)
def test_encoded_word_twins_agree_on_generated_values(value):
    compiled, python = _decoded_by_both(value)
    assert compiled == python


# Markup that decides what the HTML reader hides, strips and counts, with the characters
# Python's re.IGNORECASE folds onto ASCII letters (long s, dotted and dotless i, Kelvin sign).
_MARKUP = st.lists(st.sampled_from(["<", ">", "/", "<script", "<SCRIPT", "<scr\u0130pt", "<\u017fcript", "<scr\u0131pt",
                                    "<style", "<STYLE", "<form", "<FORM", "</script", "</style", "</SCRIPT \n>",
                                    "<!--", "-->", "<a", "_", "x", "1", " ", "\u3000", "\xe9", "\u212a", "&amp;",
                                    "&nbsp;", "&gt;", "&lt;", "&quot;", "&#39;", "&", "&copy;", "&#x41;", ";"]),
                   max_size=30).map("".join)


def test_html_twins_agree_on_real_html():
    for i, html in enumerate(_real_html()):
        assert native.without_hidden(html) == urls._without_hidden(html), i
        assert native.count_forms_scripts(html) == urls._count_forms_scripts(html), i
        visible = urls.strip_tags(urls.without_hidden(html))
        assert native.replace_common_references(visible) == urls._replace_common_references(visible), i


@hsettings(max_examples=5000, deadline=None)
@given(_MARKUP)
def test_html_twins_agree_on_generated_markup(html):
    assert native.without_hidden(html) == urls._without_hidden(html)
    assert native.count_forms_scripts(html) == urls._count_forms_scripts(html)
    assert native.replace_common_references(html) == urls._replace_common_references(html)
    assert native.strip_tags(html) == urls._strip_tags(html)


_PURE_PYTHON_RUN = """
import pickle, sys
from pathlib import Path
from mailscore import twins
from mailscore.errors import InvalidMessage
from mailscore.features import extract
from mailscore.parse import parse_email
assert not twins.compiled()
out = []
for path in sorted(Path(sys.argv[2]).iterdir()):
    try:
        msg = parse_email(path.read_bytes())
    except InvalidMessage as exc:
        out.append(("invalid", exc.reason))
        continue
    out.append((msg, extract(msg, None, trusted_authserv_ids=("mx.mailscore.example",), now=1.8e9)))
Path(sys.argv[1]).write_bytes(pickle.dumps(out))
"""


def test_pure_python_run_gives_the_same_parse_and_features(tmp_path):
    """The whole parse and feature extraction, compiled here and pure Python in a child process,
    on every real email and on seeded mutations and hostile variants of them (fuzz.py)."""
    import os
    import pickle
    import random
    import subprocess
    import sys

    from mailscore.features import extract
    from mailscore.fuzz import hostile_variants, mutate

    real = [p.read_bytes() for folder in (TRAIN_DIR, CASES_DIR, CORPUS_DIR) if folder.is_dir()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".md"]
    assert len(real) > 20
    rng = random.Random(17)
    mutated = [mutate(rng.choice(real), rng)[1] for _ in range(1500)]
    inputs = real + mutated + [raw for _, raw in hostile_variants(rng, 200)]
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i, raw in enumerate(inputs):
        (folder / f"{i:06d}.eml").write_bytes(raw)
    result = tmp_path / "pure.pickle"
    env = dict(os.environ, MAILSCORE_PURE_PYTHON="1")
    subprocess.run([sys.executable, "-c", _PURE_PYTHON_RUN, str(result), str(folder)], env=env, check=True,
                   timeout=900)
    pure = pickle.loads(result.read_bytes())
    assert len(pure) == len(inputs)
    for i, (raw, (theirs, their_row)) in enumerate(zip(inputs, pure)):
        try:
            msg = parse.parse_email(raw)
        except InvalidMessage as exc:
            assert (theirs, their_row) == ("invalid", exc.reason), i
            continue
        assert msg == theirs, i
        row = extract(msg, None, trusted_authserv_ids=("mx.mailscore.example",), now=1.8e9)
        np.testing.assert_array_equal(row, their_row, err_msg=str(i))
