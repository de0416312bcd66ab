"""The bounded parser: headers, encoded words, MIME walk, limits, non-email input."""

from __future__ import annotations

import pytest

from emails import make_email
from mailscore.errors import InvalidMessage
from mailscore.parse import decode_words, normalise_charset, parse_email
from mailscore.settings import ParseLimits


def test_reads_headers_and_text():
    msg = parse_email(make_email())
    assert msg.get("from") == "Alice Example <alice@corp.example>"
    assert msg.get("SUBJECT") == "Quarterly planning notes"
    assert "notes are attached" in msg.text
    assert msg.defects == set()


def test_folded_header_is_unfolded():
    msg = parse_email(b"From: a@corp.example\nSubject: one\n two\n\tthree\n\nbody\n")
    assert msg.get("subject") == "one two three"


@pytest.mark.parametrize("raw", [b"", b"   \n", b"\x00\x01\x02binary", b'{"json": true}', b"hello world\nno headers here\n"])
def test_non_email_is_invalid_message(raw):
    with pytest.raises(InvalidMessage) as info:
        parse_email(raw)
    assert info.value.reason in {"empty_message", "not_an_email"}
    assert info.value.stage == "parse"


def test_non_bytes_rejected():
    with pytest.raises(InvalidMessage) as info:
        parse_email("From: a@b.example\n\nx")  # type: ignore[arg-type]
    assert info.value.reason == "not_bytes"


def test_encoded_words_decode_and_crlf_is_flagged():
    defects: set[str] = set()
    assert decode_words("=?utf-8?q?caf=C3=A9?=", defects) == "café"
    assert defects == set()
    out = decode_words("=?utf-8?b?SGkNCkJjYzogeEBleGFtcGxlLm9yZw==?=", defects)
    assert "\n" not in out and "\r" not in out
    assert "header_crlf_injection" in defects


def test_bad_base64_encoded_word_is_kept_and_flagged():
    defects: set[str] = set()
    assert decode_words("=?utf-8?b?@@@?=", defects) == "=?utf-8?b?@@@?="
    assert "encoded_word_invalid" in defects


@pytest.mark.parametrize(
    ("declared", "codec", "flagged"),
    [("utf-8", "utf-8", False), ('"ISO-8859-1"', "iso8859-1", False), ("utf-8  xyz", "utf-8", True),
     ("x-no-such-charset", "utf-8", True), ("default", "utf-8", False), ("", "utf-8", False)],
)
def test_charset_normalisation(declared, codec, flagged):
    defects: set[str] = set()
    assert normalise_charset(declared, defects) == codec
    assert ("charset_invalid" in defects) is flagged


def test_header_value_is_capped():
    limits = ParseLimits(max_header_value_chars=100)
    msg = parse_email(make_email(subject="A" * 5000), limits)
    assert len(msg.get("subject")) == 100
    assert "header_value_truncated" in msg.defects


def test_header_count_is_capped():
    extra = "\n".join(f"X-Filler-{i}: {i}" for i in range(50))
    msg = parse_email(make_email(extra=extra), ParseLimits(max_headers=20))
    assert len(msg.headers) == 20
    assert "headers_truncated" in msg.defects


def test_header_block_without_blank_line_is_bounded():
    raw = b"From: a@corp.example\nSubject: x\n" + b"X-Pad: " + b"y" * 200_000
    msg = parse_email(raw, ParseLimits(max_header_bytes=4096))
    assert "header_block_truncated" in msg.defects
    assert msg.get("from") == "a@corp.example"


def test_mime_part_limit_and_depth_limit():
    parts = "".join(f"--b\nContent-Type: text/plain\n\npart {i}\n" for i in range(30))
    msg = parse_email(make_email(content_type='multipart/mixed; boundary="b"', body=parts + "--b--\n"),
                      ParseLimits(max_mime_parts=10))
    assert "mime_parts_truncated" in msg.defects
    nested = ""
    for depth in range(12):
        nested += f'--n{depth}\nContent-Type: multipart/mixed; boundary="n{depth + 1}"\n\n'
    nested += "--n12\nContent-Type: text/plain\n\ndeep\n"
    msg = parse_email(make_email(content_type='multipart/mixed; boundary="n0"', body=nested), ParseLimits(max_mime_depth=4))
    assert "mime_depth_exceeded" in msg.defects


def test_attachments_are_listed_without_content():
    body = (
        "--b\nContent-Type: text/plain\n\nsee attached\n"
        "--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\n"
        "Content-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--b--\n"
    )
    msg = parse_email(make_email(content_type='multipart/mixed; boundary="b"', body=body))
    assert [a.filename for a in msg.attachments] == ["invoice.pdf.exe"]
    assert msg.attachments[0].size == 12
    assert msg.text.strip() == "see attached"


def test_oversize_message_is_truncated_not_rejected():
    msg = parse_email(make_email(body="x" * 5000), ParseLimits(max_message_bytes=2000))
    assert "message_truncated" in msg.defects
    assert msg.size > 2000
