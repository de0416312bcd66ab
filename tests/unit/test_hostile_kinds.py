"""One test per kind of hostile input in ../shared/cases, on our own variations of it.

Each kind is exercised with several generated variants (so the fix is for
the kind, not the file); the shipped case files are run too when present.
"""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest

from conftest import CASES_DIR
from emails import make_email
from mailscore import envelope
from mailscore.errors import InvalidMessage
from mailscore.features import FEATURE_INDEX, extract, parse_sender
from mailscore.parse import parse_email

OURS = ("mx.mailscore.example",)


def features(raw: bytes, trusted=OURS) -> dict[str, float]:
    vector = extract(parse_email(raw), None, trusted_authserv_ids=trusted)
    return {name: float(vector[i]) for name, i in FEATURE_INDEX.items()}


# 01: a malformed Message-ID (and other malformed structured headers) never raise.
@pytest.mark.parametrize(
    "msgid",
    ["<[k3f9a1]=.[x7]@outbound.example.net>", "<@>", "<<<>>>", "no-brackets@example.net", "<a@b@c>", "<" + "[" * 500 + ">", "\udcff"],
)
def test_kind_malformed_message_id(msgid):
    raw = make_email(message_id=msgid.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    f = features(raw)
    assert f["msgid_malformed"] == 1.0
    assert f["msgid_missing"] == 0.0


@pytest.mark.parametrize("header", ["Date", "To", "Reply-To", "Return-Path", "Content-Type"])
def test_kind_malformed_structured_headers_do_not_raise(header):
    raw = make_email(extra=f"{header}: <[(\"\\;::@@>>,,=?x?q?\x7f?=") if header != "Content-Type" else make_email(
        content_type='multipart/"; boundary=(((')
    f = features(raw)
    assert np.isfinite(f["url_count"])


# 03: CR/LF decoded inside any header is a defect and a feature, never re-emitted.
@pytest.mark.parametrize("header", ["Subject", "From", "To", "X-Anything"])
@pytest.mark.parametrize("payload", ["=?utf-8?q?Invoice=0D=0ABcc:_x@example.org?=", "=?utf-8?b?SGkKQmNjOiB4QGV4YW1wbGUub3Jn?=",
                                     "=?iso-8859-1?q?a=0Ab?=", "=?utf-8?q?nul=00byte?="])
def test_kind_encoded_newline_in_header(header, payload):
    if header == "Subject":
        raw = make_email(subject=payload)
    elif header == "From":
        raw = make_email(sender=f"{payload} <a@corp.example>")
    elif header == "To":
        raw = make_email(to=f"{payload} <b@corp.example>")
    else:
        raw = make_email(extra=f"{header}: {payload}")
    msg = parse_email(raw)
    assert "header_crlf_injection" in msg.defects
    assert all("\n" not in v and "\r" not in v and "\x00" not in v for _, v in msg.headers)
    assert features(raw)["header_crlf_injection"] == 1.0


# 04: ambiguous From: every candidate recorded, never the first one as sender.
@pytest.mark.parametrize(
    ("value", "routable", "ambiguous"),
    [
        ("security@bank.example.com)<alerts@lookalike.example.net>", "alerts@lookalike.example.net", True),
        ('"ceo@corp.example" <boss@mailbox.example.com>', "boss@mailbox.example.com", False),
        ("ceo@corp.example <boss@mailbox.example.com>", "boss@mailbox.example.com", True),
        ("a@one.example, b@two.example", None, True),
        ("<a@one.example> <b@two.example>", None, True),
        ("(comment@evil.example) real@corp.example", "real@corp.example", False),
        ("Alice <alice@corp.example>", "alice@corp.example", False),
    ],
)
def test_kind_ambiguous_from(value, routable, ambiguous):
    sender = parse_sender(value)
    assert sender.address == routable
    f = features(make_email(sender=value))
    assert f["from_ambiguous"] == float(ambiguous)
    assert f["from_candidate_domains"] == float(len(sender.candidate_domains))
    if value.count("@") > 1:
        assert len(sender.candidate_domains) == 2


def test_kind_ambiguous_from_is_not_used_for_history():
    from mailscore.training import first_address

    assert first_address("a@one.example, b@two.example") is None


# 05: stuffing any header with separators costs bounded time.
@pytest.mark.parametrize("header", ["Content-Type: text/html; charset=utf-8", "Content-Disposition: attachment", "Subject: x", "To: a@b.example"])
@pytest.mark.parametrize("filler", [";", "; ", ",", "=?", "("])
def test_kind_separator_stuffing_is_bounded(header, filler):
    stuffed = header + filler * 200_000
    raw = make_email(extra=stuffed, content_type="text/plain") if not header.startswith("Content-Type") else make_email(
        content_type=stuffed.split(": ", 1)[1])
    started = time.perf_counter()
    msg = parse_email(raw)
    extract(msg, None, trusted_authserv_ids=OURS)
    elapsed = time.perf_counter() - started
    assert "header_value_truncated" in msg.defects
    # Compared with parsing the same message without the filler, in the same run.
    plain = make_email()
    base = time.perf_counter()
    for _ in range(20):
        extract(parse_email(plain), None, trusted_authserv_ids=OURS)
    per_plain = (time.perf_counter() - base) / 20
    assert elapsed < per_plain * 200, (elapsed, per_plain)


def test_kind_semicolon_stuffing_inside_mime_parts():
    part_header = "Content-Type: text/plain; charset=utf-8" + ";" * 100_000
    body = f"--b\n{part_header}\n\nhello http://parcel.example.net/x\n--b--\n"
    msg = parse_email(make_email(content_type='multipart/mixed; boundary="b"', body=body))
    assert "header_param_stuffing" in msg.defects
    assert "parcel.example.net" in msg.text


# 06: junk charsets still give text and URLs.
@pytest.mark.parametrize("charset", ['"utf-8  q7zx9k2"', "default", "x-junk-charset", "utf-8;;;", '"', "unicode-1-1-utf-7x", "%%%"])
@pytest.mark.parametrize("ctype", ["text/html", "text/plain"])
def test_kind_garbage_charset(charset, ctype):
    body = '<a href="http://parcel.example.net/r">Reschedule</a> caf\xe9' if ctype == "text/html" else "See http://parcel.example.net/r caf\xe9"
    raw = make_email(content_type=f"{ctype}; charset={charset}", body="").rstrip(b"\n") + b"\n\n" + body.encode("latin-1")
    f = features(raw)
    assert f["url_count"] == 1.0
    msg = parse_email(raw)
    assert "parcel.example.net" in (msg.text + msg.html)


# 07: a declared boundary that never appears: one text part, flagged, URL kept.
@pytest.mark.parametrize("ctype", ['multipart/alternative; boundary="never"', "multipart/mixed", 'multipart/related; boundary=""'])
def test_kind_missing_boundary(ctype):
    raw = make_email(content_type=ctype, body="Your parcel is on hold: http://parcel-check.example.net/track?id=7\n")
    msg = parse_email(raw)
    assert "multipart_boundary_missing" in msg.defects
    f = features(raw)
    assert f["multipart_boundary_missing"] == 1.0
    assert f["url_count"] == 1.0


# 09: non-standard Authentication-Results; planted ones ignored.
def test_kind_nonstandard_authentication_results():
    ours = "mx.mailscore.example;\n dkim=dkim_pass header.i=@news.example.org;\n spf=pass smtp.mailfrom=news.example.org;\n dmarc=success(p=REJECT) header.from=news.example.org"
    planted = "attacker-inserted.example.net; spf=pass; dkim=pass; dmarc=pass"
    anonymous = "spf=pass smtp.mailfrom=example.net; dkim=pass; dmarc=pass"
    f = features(make_email(auth=ours))
    assert (f["spf_pass"], f["dkim_pass"], f["dmarc_pass"]) == (1.0, 1.0, 1.0)
    for header in (planted, anonymous, 'mx.mailscore.example.evil.example; dkim=pass reason="a;b"'):
        f = features(make_email(auth=header))
        assert (f["spf_pass"], f["dkim_pass"], f["dmarc_pass"], f["auth_results_trusted"]) == (0.0, 0.0, 0.0, 0.0)


# 11: push envelopes with missing or odd fields.
@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"data": base64.b64encode(b"From: a@b.example\n\nhi").decode(), "messageId": "1"}, "missing_tenant"),
        ({"data": base64.b64encode(b"x").decode(), "messageId": "1", "attributes": None}, "missing_tenant"),
        ({"data": "!!not base64!!", "messageId": "1", "attributes": {"tenant": "t"}}, "data_not_base64"),
        ({"messageId": "1", "attributes": {"tenant": "t"}}, "data_missing"),
        ({"data": "", "messageId": "1", "attributes": {"tenant": "t"}}, "data_missing"),
        ({"data": "QQ==", "messageId": "1", "attributes": ["tenant"]}, "attributes_invalid"),
        ("a string", "envelope_invalid"),
    ],
)
def test_kind_push_envelope_defects(message, reason):
    with pytest.raises(InvalidMessage) as info:
        decoded = envelope.from_push_message(message)
        envelope.require_tenant(decoded)
    assert info.value.reason == reason


def test_push_envelope_without_attributes_decodes():
    decoded = envelope.from_push_message({"data": base64.b64encode(b"abc").decode(), "messageId": "42"})
    assert decoded.data == b"abc"
    assert decoded.attributes == {}
    assert decoded.message_id == "pubsub:42"


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason=f"{CASES_DIR} absent")
def test_shipped_case_files_never_raise_past_parse():
    for path in sorted(CASES_DIR.iterdir()):
        raw = path.read_bytes()
        if path.suffix == ".json":
            with pytest.raises(InvalidMessage) as info:
                envelope.require_tenant(envelope.from_push_message(json.loads(raw)["message"]))
            assert info.value.reason == "missing_tenant"
        elif path.suffix == ".eml":
            vector = extract(parse_email(raw), None, trusted_authserv_ids=OURS)
            assert vector.shape == (len(FEATURE_INDEX),)


def test_kind_semicolon_stuffing_across_folded_lines():
    folded = "Content-Type: text/plain; charset=utf-8" + ";;;;;;;;;;\n " * 20_000
    body = f"--b\n{folded}\n\nhello http://parcel.example.net/x\n--b--\n"
    started = time.perf_counter()
    msg = parse_email(make_email(content_type='multipart/mixed; boundary="b"', body=body))
    elapsed = time.perf_counter() - started
    assert "header_param_stuffing" in msg.defects
    assert "parcel.example.net" in msg.text
    base = time.perf_counter()
    parse_email(make_email(content_type='multipart/mixed; boundary="b"', body="--b\nContent-Type: text/plain\n\nhello\n--b--\n"))
    assert elapsed < (time.perf_counter() - base) * 500


# 06, the same kind: a charset naming a codec Python knows that is not a text encoding
# (rot13, base64, zlib) or that refuses replacement (idna, punycode) raised past the parser.
@pytest.mark.parametrize("charset", ["rot13", "base64", "hex", "zlib", "bz2", "uu", "quopri", "idna", "punycode",
                                     "undefined"])
def test_kind_charset_naming_a_codec_that_is_not_a_text_encoding(charset):
    subject = f"=?{charset}?q?Parcel=FF=00held?="
    raw = make_email(subject=subject, content_type=f"text/plain; charset={charset}", body="").rstrip(b"\n") + \
        b"\n\nSee http://parcel.example.net/r caf\xe9\n"
    msg = parse_email(raw)
    assert "charset_invalid" in msg.defects
    assert "parcel.example.net" in msg.text
    assert "held" in msg.get("subject")
    assert features(raw)["url_count"] == 1.0
