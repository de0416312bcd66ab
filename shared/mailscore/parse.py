"""Defensive, bounded parsing of raw RFC 5322 bytes into what the features need.

The header block is split and unfolded here, not by ``email``: every header
value is length-capped before anything interprets it, encoded words are
decoded by a small decoder that flags any CR/LF they smuggle in, and a
malformed header never raises. The MIME body is then handed to the stdlib's
``compat32`` parser, but only a bounded prefix of it, with runs of ``;``
collapsed first (the quadratic parameter parsing of case 05), and the walk
over parts is iterative with a part and depth limit.

Every anomaly becomes a *defect* code in ``ParsedEmail.defects``: the feature
extractor turns them into features, and none of them stops scoring. The only
error raised is ``InvalidMessage`` for input that is not an email at all.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from mailscore import mime
from mailscore.errors import InvalidMessage
from mailscore.settings import ParseLimits
from mailscore.twins import twin

_HEADER_NAME = re.compile(rb"^[!-9;-~]+$")  # RFC 5322 ftext: printable, no colon
_KNOWN_HEADERS = frozenset(
    {
        "from", "to", "cc", "subject", "date", "message-id", "received",
        "return-path", "reply-to", "sender", "mime-version", "content-type",
        "delivered-to", "x-mailer", "authentication-results", "dkim-signature",
    }
)
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
# A run of separators, across folded lines but never across a blank line.
_SEMICOLON_RUN = re.compile(rb";(?:[ \t;]|\r?\n[ \t]){15,}")
_SEMICOLON_RUN_STR = re.compile(r";[ \t;]{15,}")
_CHARSET_TOKEN = re.compile(r"[A-Za-z0-9_.:+-]{1,40}")
_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version", "content-disposition"})


@dataclass
class Attachment:
    """What the features need to know about one attachment (never its content)."""

    filename: str
    content_type: str
    size: int


@dataclass
class ParsedEmail:
    """The bounded, sanitised view of one message the feature extractor reads."""

    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower name, value)
    defects: set[str] = field(default_factory=set)
    text: str = ""
    html: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    mime_parts: int = 0
    size: int = 0
    # First value of each header name, built from ``headers`` at the first ``get`` (not compared:
    # a view of ``headers``, which must not change once read).
    _first: dict[str, str] | None = field(default=None, compare=False, repr=False)

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        return self.first_values().get(name.lower())

    def first_values(self) -> dict[str, str]:
        """The first value of each header, by lower-case name (built once, at the first call)."""
        if self._first is None:
            self._first = dict(reversed(self.headers))  # earlier pairs are inserted last and win
        return self._first

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in message order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def count(self, name: str) -> int:
        name = name.lower()
        return sum(1 for key, _ in self.headers if key == name)


def parse_email(raw: bytes, limits: ParseLimits | None = None, *, fast: bool = True) -> ParsedEmail:
    """Parse ``raw`` within ``limits``; raise InvalidMessage only for non-email input.

    ``fast`` walks a well-formed MIME body with ``mime.walk`` and falls back to
    the stdlib's feed parser for anything else; ``fast=False`` always takes the
    feed parser. Both give the same ``ParsedEmail`` (a test proves it on the corpus).
    """
    limits = limits or ParseLimits()
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidMessage("not_bytes", f"expected bytes, got {type(raw).__name__}", stage="parse")
    parsed = ParsedEmail(size=len(raw))
    if len(raw) > limits.max_message_bytes:  # bound first: nothing below sees more than this
        parsed.defects.add("message_truncated")
        raw = raw[: limits.max_message_bytes]
    raw = bytes(raw)
    # All whitespace? Most messages show a non-space byte at once, without copying 64 KiB.
    if not raw[:256].strip() and not raw[:65536].strip() and not raw.strip():
        raise InvalidMessage("empty_message", "the message has no bytes", stage="parse")

    header_block, body = _split_header_block(raw, limits, parsed.defects)
    parsed.headers = _parse_headers(header_block, limits, parsed.defects)
    if not any(name in _KNOWN_HEADERS for name, _ in parsed.headers):
        raise InvalidMessage(
            "not_an_email", "no RFC 5322 header block was found", stage="parse"
        )
    _parse_body(parsed, body, limits, fast=fast)
    return parsed


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _split_header_block(raw: bytes, limits: ParseLimits, defects: set[str]) -> tuple[bytes, bytes]:
    limit = limits.max_header_bytes + 4
    # The first line break followed by an empty line decides in one scan for the usual
    # cases: "\n\n" is the first LF blank line and no CRLF one comes before it;
    # "\r\n\r\n" is the first CRLF blank line and no LF one comes before it. Only a
    # "\n\r\n" without its "\r" (mixed line ends) needs the two searches below.
    blank = _BLANK_LINE.search(raw, 0, limit)
    if blank is None:
        return _no_blank_line(raw, limits, defects)
    start = blank.start()
    if blank.end() - start == 2:
        return _cut_header_block(raw, start, 2, limits, defects)
    if start and raw[start - 1] == 0x0D:
        return _cut_header_block(raw, start - 1, 4, limits, defects)
    lf = raw.find(b"\n\n", 0, limit)
    # A CRLF blank line can only come first if it starts before the LF one.
    crlf = raw.find(b"\r\n\r\n", 0, lf + 3 if lf >= 0 else limit)
    ends = [i for i in (crlf, lf) if i >= 0]
    if ends:
        end = min(ends)
        return _cut_header_block(raw, end, 4 if raw.startswith(b"\r\n\r\n", end) else 2, limits, defects)
    return _no_blank_line(raw, limits, defects)


def _cut_header_block(raw: bytes, end: int, sep: int, limits: ParseLimits, defects: set[str]) -> tuple[bytes, bytes]:
    if end > limits.max_header_bytes:
        defects.add("header_block_truncated")
    return raw[: min(end, limits.max_header_bytes)], raw[end + sep :]


def _no_blank_line(raw: bytes, limits: ParseLimits, defects: set[str]) -> tuple[bytes, bytes]:
    if len(raw) <= limits.max_header_bytes:
        defects.add("no_body")
        return raw, b""
    # No blank line within the bound: keep the bounded prefix as headers and
    # treat the rest as unreadable rather than scanning megabytes for a blank line.
    defects.add("header_block_truncated")
    return raw[: limits.max_header_bytes], b""


def _parse_headers(block: bytes, limits: ParseLimits, defects: set[str]) -> list[tuple[str, str]]:
    return _read_fields(block, limits.max_headers, limits.max_header_value_chars, defects, _word_codec)


def _read_header_fields(block: bytes, max_headers: int, max_chars: int, defects: set[str],
                        word_codec: Callable[[str], tuple[str, bool]]) -> list[tuple[str, str]]:
    """The header block as (lower-case name, decoded value); ``_native.read_header_fields`` is the compiled twin."""
    headers = []
    for name, value in _split_header_fields(block, max_headers, defects):
        if value.isascii():
            text = value.decode("ascii")
        else:
            text = value.decode("utf-8", "replace")
            if "\ufffd" in text:
                defects.add("header_8bit_invalid")
        if len(text) > max_chars:
            defects.add("header_value_truncated")
            text = text[:max_chars]
        headers.append((name, _decode(text, defects, word_codec) if "=?" in text else text))
    return headers


def _split_header_fields(block: bytes, max_headers: int, defects: set[str]) -> list[tuple[str, bytes]]:
    """The header block's fields as (lower-case name, unfolded value bytes); line faults go into ``defects``.

    Each field's value pieces are its stripped lines, joined with a space once
    at the end; continuation lines after an invalid line still belong to the
    last valid field.
    """
    fields: list[tuple[bytes, list[bytes]]] = []
    pieces: list[bytes] | None = None
    valid_name = _HEADER_NAME.match
    for line in block.splitlines():
        if line.startswith((b" ", b"\t")):
            if pieces is not None:
                pieces.append(line.strip())
            else:
                defects.add("header_continuation_without_field")
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            if line.strip():
                defects.add("header_line_invalid")
            continue
        name = name.rstrip()
        if not name or not valid_name(name):
            defects.add("header_line_invalid")
            continue
        if len(fields) >= max_headers:
            defects.add("headers_truncated")
            break
        pieces = [value.strip()]
        fields.append((name, pieces))
    # A valid name is ASCII: lower-casing the bytes is lower-casing the text.
    return [(name.lower().decode("ascii"), b" ".join(parts) if len(parts) > 1 else parts[0])
            for name, parts in fields]


def decode_words(value: str, defects: set[str] | None = None) -> str:
    """Decode RFC 2047 encoded words; decoded CR/LF or NUL become a defect and a space.

    The result is safe to log or re-emit as one line: it never holds a line
    break (CVE-2024-6923 re-emits a decoded newline as a new header).
    """
    defects = defects if defects is not None else set()
    if "=?" not in value:
        return value
    return _decode(value, defects, _word_codec)


def _decode_words(value: str, defects: set[str], word_codec: Callable[[str], tuple[str, bool]]) -> str:
    """The words of ``value`` decoded; ``_native.decode_words`` is the compiled twin.

    ``word_codec`` is ``_word_codec`` (charset -> codec, flagged).
    """
    # One split (text, charset, encoding, payload, text, ...) and one loop with the
    # per-word work inlined: Microsoft's antispam headers carry dozens of encoded words.
    parts = _ENCODED_WORD.split(value)
    if len(parts) == 1:
        return value
    pieces = [parts[0]]
    append = pieces.append
    for i in range(1, len(parts), 4):
        charset, encoding, payload = parts[i], parts[i + 1], parts[i + 2]
        try:
            if encoding == "B" or encoding == "b":
                # base64.b64decode(..., validate=True) is this strict a2b_base64
                data = binascii.a2b_base64(payload + _B64_PAD[len(payload) & 3], strict_mode=True)
            else:
                # quopri.decodestring(..., header=True) is this a2b_qp
                data = binascii.a2b_qp(payload.replace("_", " ").encode("ascii", "replace"), header=True)
        except (binascii.Error, ValueError):
            defects.add("encoded_word_invalid")
            append(f"=?{charset}?{encoding}?{payload}?=")  # the word as it was
            append(parts[i + 3])
            continue
        codec, flagged = word_codec(charset)
        if flagged:
            defects.add("charset_invalid")
        text = data.decode(codec, "replace")
        if "\r" in text or "\n" in text or "\x00" in text:
            defects.add("header_crlf_injection")
            text = text.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
        append(text)
        append(parts[i + 3])
    # Whitespace between two adjacent encoded words is not part of the text.
    return "".join(pieces)


_decode = twin("decode_words", _decode_words)
_read_fields = twin("read_header_fields", _read_header_fields)


_B64_PAD = ("", "===", "==", "=")


@lru_cache(maxsize=4096)
def _word_codec(charset: str) -> tuple[str, bool]:
    """``normalise_charset`` of an encoded word's charset (less any RFC 2231 language): codec, flagged."""
    charset = charset.split("*")[0]
    if not charset:
        return "utf-8", False
    return _charset_codec(charset)


def normalise_charset(charset: str | None, defects: set[str]) -> str:
    """A codec name Python knows: the declared one if valid, else utf-8 (flagged)."""
    if not charset:
        return "utf-8"
    codec, flagged = _charset_codec(charset)
    if flagged:
        defects.add("charset_invalid")
    return codec


@lru_cache(maxsize=4096)
def _charset_codec(charset: str) -> tuple[str, bool]:
    declared = charset.strip().strip('"').lower()
    token = _CHARSET_TOKEN.match(declared)
    if token:
        name = token.group(0)
        flagged = name != declared
        if name in ("default", "us-ascii", "ascii", "unknown-8bit", "x-unknown"):
            return ("utf-8" if name != "us-ascii" and name != "ascii" else "ascii"), flagged
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            pass
        else:
            if _decodes_text(codec):
                return codec, flagged
    return "utf-8", True


def _decodes_text(codec: str) -> bool:
    """Whether ``bytes.decode(codec, "replace")`` works: "rot13", "base64" or "zlib" are codecs
    Python knows but not text encodings, and "idna" or "punycode" refuse "replace"."""
    try:
        b"\xff\x00a\r\n=?".decode(codec, "replace")
    except Exception:  # noqa: BLE001 - LookupError, UnicodeError and whatever else a codec raises
        return False
    return True


def _decode_text(data: bytes, codec: str, defects: set[str]) -> str:
    try:
        return data.decode(codec)
    except (UnicodeError, LookupError):
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        defects.add("body_decode_fallback")
        return data.decode("latin-1", "replace")


def _parse_body(parsed: ParsedEmail, body: bytes, limits: ParseLimits, *, fast: bool = True) -> None:
    if len(body) > limits.max_body_scan_bytes:
        parsed.defects.add("body_scan_truncated")
        body = body[: limits.max_body_scan_bytes]
    if b";" in body:
        body, stuffed = collapse_semicolon_runs(body)
    else:
        stuffed = 0
    body = _bound_containers(body, limits, parsed.defects)
    mime_pairs = []
    for name, value in parsed.headers:
        if name in _MIME_HEADERS:
            value, n = _SEMICOLON_RUN_STR.subn("; ", value)
            stuffed += n
            mime_pairs.append((name, value))
    if stuffed:
        parsed.defects.add("header_param_stuffing")
    present = {name for name, _ in mime_pairs}  # every MIME header there is, from the pass above
    if "content-type" in present and "mime-version" not in present:
        parsed.defects.add("mime_version_missing")

    text_parts: list[str] = []
    html_parts: list[str] = []
    walk = mime.walk(body, mime_pairs, max_parts=limits.max_mime_parts, max_depth=limits.max_mime_depth) if fast else None
    if walk is not None:
        parsed.mime_parts = walk.parts
        budget = limits.max_body_scan_bytes
        for leaf in walk.leaves:
            budget = _take_leaf(parsed, leaf.content_type, leaf.data, leaf.filename, leaf.disposition, leaf.charset,
                                budget, text_parts, html_parts, size=leaf.size)
    else:
        _walk_compat32(parsed, body, mime_pairs, limits, text_parts, html_parts)
    parsed.text = "\n".join(text_parts)
    parsed.html = "\n".join(html_parts)


def _walk_compat32(parsed: ParsedEmail, body: bytes, mime_pairs: list[tuple[str, str]], limits: ParseLimits,
                   text_parts: list[str], html_parts: list[str]) -> None:
    """The robust walk: the stdlib's compat32 feed parser, every accessor guarded."""
    mime_head = [f"{name}: {value}" for name, value in mime_pairs]
    source = ("\n".join(mime_head) + "\n\n").encode("utf-8", "replace") + body
    root = email.message_from_bytes(source, policy=email.policy.compat32)

    budget = limits.max_body_scan_bytes
    stack = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        parsed.mime_parts += 1
        if parsed.mime_parts > limits.max_mime_parts:
            parsed.defects.add("mime_parts_truncated")
            break
        for defect in part.defects:
            if isinstance(defect, (email.errors.StartBoundaryNotFoundDefect,
                                   email.errors.NoBoundaryInMultipartDefect,
                                   email.errors.CloseBoundaryNotFoundDefect)):
                parsed.defects.add("multipart_boundary_missing")
            else:
                parsed.defects.add("mime_defect")
        ctype = _safe(part.get_content_type, "text/plain")
        if part.is_multipart():
            if depth >= limits.max_mime_depth:
                parsed.defects.add("mime_depth_exceeded")
                continue
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children))
            continue
        data = _safe(lambda: part.get_payload(decode=True), None) or b""
        if not isinstance(data, bytes):
            data = str(data).encode("utf-8", "replace")
        filename = _safe(part.get_filename, None)
        disposition = (_safe(part.get_content_disposition, None) or "").lower()
        budget = _take_leaf(parsed, ctype, data, filename, disposition,
                            lambda part=part: _safe(part.get_content_charset, None), budget, text_parts, html_parts)


def _take_leaf(parsed: ParsedEmail, ctype: str, data: bytes, filename: str | None, disposition: str,
               charset: Callable[[], str | None], budget: int, text_parts: list[str], html_parts: list[str],
               *, size: int | None = None) -> int:
    """Record one leaf part (attachment and/or text); returns the text budget left.

    ``size`` is the decoded length when the walk did not decode ``data`` (a part
    that is neither text/plain nor text/html, whose content is never read).
    """
    if filename or disposition == "attachment" or not (
        ctype.startswith("text/") or ctype.startswith("multipart/")
    ):
        parsed.attachments.append(
            Attachment(decode_words(str(filename or ""), parsed.defects)[:255], ctype, len(data) if size is None else size)
        )
        if ctype != "text/html":
            return budget
    if ctype.startswith("multipart/"):
        # Declared multipart whose boundary never appears: one text part.
        ctype = "text/plain"
    if ctype not in ("text/plain", "text/html") or budget <= 0:
        return budget
    data = data[:budget]
    budget -= len(data)
    text = _decode_text(data, normalise_charset(charset(), parsed.defects), parsed.defects)
    (html_parts if ctype == "text/html" else text_parts).append(text)
    return budget


_BOUNDARY_PARAM = re.compile(rb"(?i)boundary\s*=")


def _bound_containers(body: bytes, limits: ParseLimits, defects: set[str]) -> bytes:
    """Cut the body before the container that would exceed the part budget.

    The stdlib parser's cost grows with the number of nested multipart
    boundaries it must track (a nesting bomb of a few hundred levels takes
    hundreds of ms), so containers beyond the limit are never handed to it.
    """
    start = nth_boundary_param(body, limits.max_mime_depth * 2)
    if start < 0:
        return body
    defects.add("mime_depth_exceeded")
    return body[: body.rfind(b"\n", 0, start) + 1]


def _nth_boundary_param(body: bytes, allowed: int) -> int:
    """Where the ``allowed + 1``-th ``boundary=`` parameter starts, or -1; ``_native`` has the compiled twin."""
    # Every match holds an "=" and "boundary" in some case: when the body has no
    # more of either than allowed, there is no such match (C passes, no regex).
    if body.count(b"=") <= allowed or body.lower().count(b"boundary") <= allowed:
        return -1
    for count, match in enumerate(_BOUNDARY_PARAM.finditer(body), start=1):
        if count > allowed:
            return match.start()
    return -1


def _collapse_semicolon_runs(body: bytes) -> tuple[bytes, int]:
    """Runs of 15+ separators after a ";" become "; " (case 05); ``_native`` has the compiled twin."""
    return _SEMICOLON_RUN.subn(b"; ", body)


collapse_semicolon_runs = twin("collapse_semicolon_runs", _collapse_semicolon_runs)
nth_boundary_param = twin("nth_boundary_param", _nth_boundary_param)


def _safe(call, default):
    """Run one stdlib accessor; any exception from hostile input means ``default``."""
    try:
        return call()
    except Exception:  # noqa: BLE001 - the stdlib raises many kinds on bad input
        return default
