"""The fast MIME walk and the compat32 walk give the same parse and the same features.

Run on the real corpus (when ../shared/corpus is present), the shipped
emails, the hostile case files and our own variants; the fast path must also
actually be taken for well-formed mail, or it proves nothing.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import CASES_DIR, CORPUS_DIR, TRAIN_DIR
from emails import PHISH, make_email
from mailscore import mime
from mailscore.errors import InvalidMessage
from mailscore.features import _TERM_PATTERNS, count_terms, extract
from mailscore.parse import _MIME_HEADERS, _split_header_block, parse_email
from mailscore.settings import ParseLimits
from mailscore.urls import _URL, bare_urls

OURS = ("mx.mailscore.example",)


def _emails(folder) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.rglob("*.eml"))] if folder.is_dir() else []


def _both(raw: bytes):
    try:
        return parse_email(raw, fast=True), parse_email(raw, fast=False)
    except InvalidMessage:
        return None


def _assert_paths_agree(raws: list[bytes]) -> None:
    for i, raw in enumerate(raws):
        pair = _both(raw)
        if pair is None:
            continue
        fast, robust = pair
        assert fast == robust, f"email #{i}: " + ", ".join(
            k for k in fast.__dataclass_fields__ if getattr(fast, k) != getattr(robust, k))
        a = extract(fast, None, trusted_authserv_ids=OURS, now=1.8e9)
        b = extract(robust, None, trusted_authserv_ids=OURS, now=1.8e9)
        np.testing.assert_array_equal(a, b, err_msg=f"email #{i}")


def _fast_share(raws: list[bytes]) -> float:
    taken = total = 0
    for raw in raws:
        try:
            msg = parse_email(raw)
        except InvalidMessage:
            continue
        total += 1
        _, body = _split_header_block(raw, ParseLimits(), set())
        pairs = [(n, v) for n, v in msg.headers if n in _MIME_HEADERS]
        taken += mime.walk(body, pairs, max_parts=64, max_depth=8) is not None
    return taken / total


def test_paths_agree_on_shipped_emails():
    raws = _emails(TRAIN_DIR)
    assert len(raws) > 50
    _assert_paths_agree(raws)
    assert _fast_share(raws) > 0.9


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS_DIR.is_dir(), reason=f"corpus folder {CORPUS_DIR} absent (set MAILSCORE_CORPUS)")
def test_paths_agree_on_real_corpus():
    raws = _emails(CORPUS_DIR)
    _assert_paths_agree(raws)
    assert _fast_share(raws) > 0.9


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason=f"{CASES_DIR} absent")
def test_paths_agree_on_hostile_cases():
    _assert_paths_agree(_emails(CASES_DIR))


MULTIPART = (
    "--b\nContent-Type: text/plain; charset=utf-8\n\nhello http://a.example/x\n"
    "--b\nContent-Type: multipart/alternative; boundary=\"c\"\n\n"
    "--c\nContent-Type: text/html; charset=\"iso-8859-1\"\nContent-Transfer-Encoding: quoted-printable\n\n"
    "<a href=3D\"http://b.example\">caf=E9</a>\n--c--\n"
    "--b\nContent-Type: application/pdf; name=\"x.pdf\"\nContent-Transfer-Encoding: base64\n"
    "Content-Disposition: attachment;\n filename=\"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=\"\n\nJVBERi0xLjQK\n--b--\n"
)


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ('multipart/mixed; boundary="b"', MULTIPART),
        ('multipart/mixed; boundary="b"', MULTIPART.replace("\n", "\r\n")),
        ('multipart/mixed; boundary="b"', MULTIPART.replace("--b--", "--b")),  # no closing boundary
        ('multipart/mixed; boundary="b"', MULTIPART.replace("\n\nhello", "\nhello")),  # no header/body blank line
        ('multipart/mixed; boundary="b"', MULTIPART.replace("charset=utf-8", "charset*=utf-8''x")),  # RFC 2231
        ('multipart/mixed; boundary="b"', "preamble\n--b\n\nbare part\n--b--\nepilogue\n--b\n"),
        ('multipart/mixed; boundary="b"', "--b\n--b\nContent-Type: text/plain\n\ndouble\n--b--\n"),
        ("multipart/mixed", MULTIPART),  # no boundary parameter
        ('multipart/digest; boundary="b"', MULTIPART),
        ("text/plain; charset=utf-8", "plain\rtext with a lone CR\n"),
        ("text/html", "<p>x</p>\x0c<a href='http://c.example'>y</a>"),
    ],
)
def test_paths_agree_on_structures(ctype, body):
    _assert_paths_agree([make_email(content_type=ctype, body=body), make_email(content_type=ctype, body=body,
                                                                               extra="Content-Transfer-Encoding: 7bit")])


def test_fast_walk_declines_what_it_cannot_promise():
    pairs = [("content-type", "multipart/mixed")]
    assert mime.walk(b"--b\n\nx\n--b--\n", pairs, max_parts=64, max_depth=8) is None
    pairs = [("content-type", 'multipart/mixed; boundary="b"')]
    assert mime.walk(b"--b\n\nx\n--b--\n", pairs, max_parts=64, max_depth=8) is not None
    assert mime.walk(b"--b\n\nx\n--b\n", pairs, max_parts=64, max_depth=8) is None  # never closed
    assert mime.walk(b"--b\n\nx\n--b--\n", pairs, max_parts=1, max_depth=8) is None  # part limit


def test_term_counts_equal_the_reference_patterns():
    reference = {name: re.compile(rf"(?i)\b({alt})\b") for name, alt in _TERM_PATTERNS.items()}
    texts = ["URGENT: verify your password now, log in; Passwordé café-password gift cards tax_x tax",
             PHISH.decode(), "sign in urgently expired 'invoice' Ünicode-tax taxé étax"]
    for raw in _emails(TRAIN_DIR) + _emails(CORPUS_DIR):
        try:
            msg = parse_email(raw)
        except InvalidMessage:
            continue
        texts.append(msg.text + "\n" + msg.html)
    for text in texts:
        want = {name: float(len(pattern.findall(text))) for name, pattern in reference.items()}
        assert count_terms(text) == want


def test_bare_urls_equal_the_reference_pattern():
    texts = ["see http://a.example/x, WWW.B.EXAMPLE and xhttp://no.example İhttp://c.example https://d.example/?u=http://e"]
    for raw in _emails(TRAIN_DIR) + _emails(CORPUS_DIR)[:200]:
        try:
            texts.append(parse_email(raw).text)
        except InvalidMessage:
            continue
    for text in texts:
        assert list(bare_urls(text)) == [m.group(0) for m in _URL.finditer(text)]


def test_rfc2231_charset_of_a_named_text_part_takes_the_robust_walk():
    """A filename from Content-Disposition used to leave "charset*=" to be read after the walk,
    where its Fallback escaped parse_email instead of choosing the robust walk."""
    raw = (b"From: a@b.example\nTo: c@d.example\nSubject: x\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/mixed; boundary=\"BB\"\n\n--BB\n"
           b"Content-Type: text/html; charset*=utf-8''x\n"
           b"Content-Disposition: attachment; filename=\"a.html\"\n\n<p>hi</p>\n--BB--\n")
    _assert_paths_agree([raw])


def test_unescape_html_equals_the_standard_library():
    """The replace-based unescape against html.unescape on strings built from reference fragments."""
    import html
    import random

    from mailscore.urls import unescape_html

    pieces = ["&nbsp;", "&gt;", "&lt;", "&quot;", "&#39;", "&amp;", "&amp", "&not", "&notin;", "&#8217;", "&#x41",
              "&", "#", ";", "a", "b1", " ", ">", "\xa0", "'", '"', "not", "&lt", "&copy", "amp;", "&#3", "9;", "\n"]
    rng = random.Random(4)
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))
        assert unescape_html(text) == html.unescape(text), repr(text)
