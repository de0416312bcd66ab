"""Property-based and mutation fuzzing: every input is a feature vector or a clear error."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TRAIN_DIR
from emails import PHISH, make_email
from mailscore import fuzz
from mailscore.errors import InvalidMessage
from mailscore.features import FEATURE_NAMES, extract
from mailscore.parse import parse_email
from mailscore.settings import ParseLimits

LIMITS = ParseLimits(max_message_bytes=256 * 1024, max_body_scan_bytes=64 * 1024)


def _score_or_reject(raw: bytes) -> None:
    try:
        msg = parse_email(raw, LIMITS)
    except InvalidMessage as exc:
        assert exc.reason and exc.stage == "parse"
        return
    vector = extract(msg, None, trusted_authserv_ids=("mx.mailscore.example",), limits=LIMITS)
    assert vector.shape == (len(FEATURE_NAMES),) and not np.isinf(vector).any()
    for _, value in msg.headers:
        assert "\n" not in value and "\r" not in value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw):
    _score_or_reject(raw)


header_name = st.sampled_from(["From", "To", "Subject", "Date", "Message-ID", "Reply-To", "Content-Type",
                               "Authentication-Results", "Received", "Content-Transfer-Encoding", "X-Odd"])
header_value = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(header_name, header_value), min_size=1, max_size=20), st.binary(max_size=2048))
def test_structured_headers_with_any_values(headers, body):
    raw = "\n".join(f"{name}: {value}" for name, value in headers).encode("utf-8", "surrogatepass") + b"\n\n" + body
    _score_or_reject(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32), st.sampled_from(fuzz.MUTATIONS))
def test_each_mutation_kind(seed, kind):
    rng = random.Random(seed)
    base = rng.choice([PHISH, make_email(), (TRAIN_DIR / "ham").glob("*.eml").__next__().read_bytes()])
    _score_or_reject(fuzz._MUTATORS[kind](base, rng)[: fuzz.MAX_INPUT_BYTES])


def test_short_fuzz_run_has_no_crashes():
    seeds = fuzz.seed_emails([TRAIN_DIR], limit=40)
    result = fuzz.run(seeds, 300, limits=LIMITS, seed=7)
    assert result["fuzz_inputs"] == 300
    assert result["fuzz_crashes"] == 0, result["crash_kinds"]
    assert set(result["mutations"]) <= set(fuzz.MUTATIONS) and len(result["mutations"]) >= 8


def test_hostile_variants_cover_every_case_kind():
    variants = fuzz.hostile_variants(random.Random(2), 70)
    assert len({kind for kind, _ in variants}) == 7
    for _, raw in variants:
        _score_or_reject(raw)


def test_nesting_bomb_is_cut_before_the_stdlib_parser():
    bomb = fuzz.nesting_bomb(make_email(), 300)
    assert bomb.count(b"boundary=") == 301
    msg = parse_email(bomb)
    assert "mime_depth_exceeded" in msg.defects
    assert msg.mime_parts <= ParseLimits().max_mime_depth * 2 + 2
