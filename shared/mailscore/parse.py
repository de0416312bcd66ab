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
from dataclasses import dataclass
from itertools import chain
from functools import lru_cache

from mailscore import mime
from mailscore.errors import InvalidMessage
from mailscore.settings import ParseLimits

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
_MIME_HEADERS = ("content-type", "content-transfer-encoding", "mime-version", "content-disposition")


@dataclass
class Attachment:
    """What the features need to know about one attachment (never its content)."""

    filename: str
    content_type: str
    size: int


class ParsedEmail:
    """The bounded, sanitised view of one message the feature extractor reads.

    Header values are decoded (unfolded, length-capped, encoded words decoded)
    when first read: most fields of a message (trace and anti-spam headers)
    are never read, and only their defects matter, which the parser records
    when it splits the block. ``headers`` gives every (lower name, value) pair.
    """

    __slots__ = ("defects", "text", "html", "attachments", "mime_parts", "size",
                 "_names", "_values", "_raws", "_max_chars", "_first")

    def __init__(self, headers: list[tuple[str, str]] | None = None, *, size: int = 0) -> None:
        self.defects: set[str] = set()
        self.text = ""
        self.html = ""
        self.attachments: list[Attachment] = []
        self.mime_parts = 0
        self.size = size
        self._set_decoded(headers or [])

    def _set_decoded(self, headers: list[tuple[str, str]]) -> None:
        self._names = [name for name, _ in headers]
        self._values: list[str | None] = [value for _, value in headers]
        self._raws: list[str] = []
        self._max_chars = 0
        self._first = _first_index(self._names)

    def _set_lazy(self, names: list[str], raws: list[str], max_chars: int) -> None:
        """Fields whose values are decoded on first read from ``raws`` (see ``_clean_fields``)."""
        self._names = names
        self._values = [None] * len(names)
        self._raws = raws
        self._max_chars = max_chars
        self._first = _first_index(names)

    def _value(self, index: int) -> str:
        value = self._values[index]
        if value is None:
            value = _field_text(self._raws[index], self._max_chars)
            if "=?" in value:
                value = decode_words(value, set())  # its defects were recorded at parse
            self._values[index] = value
        return value

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header as (lower name, decoded value), in message order."""
        return [(name, self._value(i)) for i, name in enumerate(self._names)]

    @property
    def names(self) -> list[str]:
        """Every header's lower-case name, in message order."""
        return self._names

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        index = self._first.get(name.lower())
        return None if index is None else self._value(index)

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name``, in message order."""
        name = name.lower()
        return [self._value(i) for i, key in enumerate(self._names) if key == name]

    def count(self, name: str) -> int:
        return self._names.count(name.lower())

    FIELDS = ("headers", "defects", "text", "html", "attachments", "mime_parts", "size")

    def __eq__(self, other: object) -> bool:
        """Equal when everything a reader sees is equal (decoded now or later alike)."""
        if not isinstance(other, ParsedEmail):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass was


def _first_index(names: list[str]) -> dict[str, int]:
    """Name -> index of its first occurrence (later pairs of the reversed zip win)."""
    return dict(zip(reversed(names), range(len(names) - 1, -1, -1)))


def parse_email(raw: bytes, limits: ParseLimits | None = None, *, fast: bool = True) -> ParsedEmail:
    """Parse ``raw`` within ``limits``; raise InvalidMessage only for non-email input.

    ``fast`` reads a usual header block with two regex passes (values decoded
    when read) and walks a well-formed MIME body with ``mime.walk``, falling
    back to the line loop and the stdlib's feed parser for anything else;
    ``fast=False`` always takes those. Both give the same ``ParsedEmail`` (a
    test proves it on the corpus, the cases and fuzzed variants).
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
    clean = _clean_fields(header_block, limits, parsed.defects) if fast else None
    if clean is not None:
        parsed._set_lazy(clean[0], clean[1], limits.max_header_value_chars)
    else:
        parsed._set_decoded(_parse_headers(header_block, limits, parsed.defects))
    if _KNOWN_HEADERS.isdisjoint(parsed.names):
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


# One header field of a block that ``_clean_fields`` reads: the name (ftext) and
# the rest, from the blanks before the colon to the end of its last continuation line.
_FIELD = re.compile(r"([!-9;-~]+)([ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*)")
_FTEXT = re.compile(r"[!-9;-~]+")
_BYTES_WHITESPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips
# Codecs that map every byte below 0x80 to itself and no other byte to CR, LF or NUL.
_SAFE_WORD_CODECS = frozenset(  # as _word_codec gives them: (codec, not flagged)
    (codec, False) for codec in ("ascii", "utf-8", "iso8859-1", "cp1252", "iso8859-15", "iso8859-2", "cp1250")
)
_QP_CONTROL = re.compile(r"=0[0aAdD]|\x00")


def _clean_fields(block: bytes, limits: ParseLimits, defects: set[str]) -> tuple[list[str], list[str]] | None:
    """(lower names, raw fields) of a usual header block, its defects recorded; None otherwise.

    Usual means valid UTF-8, no carriage return outside CRLF, and, after an
    optional first line that is not a field (an mbox "From " line), nothing but
    field lines and their continuations. For such a block ``_parse_headers``
    would find the same fields and no defect but the ones recorded here; the
    values are left raw, for ``ParsedEmail`` to decode when they are read.
    """
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # a line of the line loop would end at a lone CR; each CR here strips away
    text += "\n"
    if _FIELD.match(text) is None:
        first, _, rest = text.partition("\n")
        name, colon, _ = first.partition(":")
        if not first.strip(_BYTES_WHITESPACE) or rest[:1] in (" ", "\t") or (
            colon and _FTEXT.fullmatch(name.rstrip(_BYTES_WHITESPACE))
        ):
            return None
        defects.add("header_line_invalid")  # the line loop's verdict on that first line
        text = rest
    fields = _FIELD.findall(text)
    if sum(map(len, chain.from_iterable(fields))) != len(text):
        return None  # a line that is neither a field nor a continuation
    if len(fields) > limits.max_headers:
        defects.add("headers_truncated")
        del fields[limits.max_headers :]
    if not text.isascii() and "\ufffd" in text:
        defects.add("header_8bit_invalid")
    names = [name.lower() for name, _ in fields]
    raws = [raw for _, raw in fields]
    max_chars = limits.max_header_value_chars
    if "=?" in text or max(map(len, raws), default=0) > max_chars:
        for raw in raws:
            if "=?" in raw or len(raw) > max_chars:
                _field_defects(raw, max_chars, defects)
    return names, raws


def _unfold(raw: str) -> str:
    """The value of a ``_FIELD`` match's rest: its lines stripped and joined by a space."""
    value = raw[raw.index(":") + 1 :]
    if value.count("\n") == 1:
        return value.strip(_BYTES_WHITESPACE)
    return " ".join([line.strip(_BYTES_WHITESPACE) for line in value.split("\n")[:-1]])


def _field_text(raw: str, max_chars: int) -> str:
    return _unfold(raw)[:max_chars]


def _field_defects(raw: str, max_chars: int, defects: set[str]) -> None:
    """The defects decoding this field would record (it is decoded only if it is read)."""
    value = _unfold(raw)
    if len(value) > max_chars:
        defects.add("header_value_truncated")
        value = value[:max_chars]
    if "=?" not in value:
        return
    words = _ENCODED_WORD.findall(value)
    if not all(_word_codec(charset) in _SAFE_WORD_CODECS for charset in {charset for charset, _, _ in words}):
        decode_words(value, defects)
        return
    # In these codecs a word's text has CR, LF or NUL exactly where its bytes do.
    # A quoted-printable payload decodes to one of them exactly where it has
    # "=0D", "=0A", "=00" (either case) or a raw NUL: every "=" starts an escape,
    # since none is ever part of the one before. "?" joins payloads and is in none.
    quoted = "?".join([payload for _, encoding, payload in words if encoding in "qQ"])
    try:
        data = b"".join([binascii.a2b_base64(payload + _B64_PAD[len(payload) & 3], strict_mode=True)
                         for _, encoding, payload in words if encoding in "bB"])
    except (binascii.Error, ValueError):
        decode_words(value, defects)  # an invalid word: let the decoder say which
        return
    if _QP_CONTROL.search(quoted) is not None or b"\r" in data or b"\n" in data or b"\x00" in data:
        defects.add("header_crlf_injection")


def _parse_headers(block: bytes, limits: ParseLimits, defects: set[str]) -> list[tuple[str, str]]:
    """Any header block, line by line: every field decoded, every anomaly a defect."""
    # Each field's value pieces (its stripped lines), joined with a space once at the end;
    # continuation lines after an invalid line still belong to the last valid field.
    fields: list[tuple[bytes, list[bytes]]] = []
    pieces: list[bytes] | None = None
    max_headers = limits.max_headers
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
    headers = []
    max_chars = limits.max_header_value_chars
    for name, pieces in fields:
        value = b" ".join(pieces) if len(pieces) > 1 else pieces[0]
        if value.isascii():
            text = value.decode("ascii")
        else:
            text = value.decode("utf-8", "replace")
            if "\ufffd" in text:
                defects.add("header_8bit_invalid")
        if len(text) > max_chars:
            defects.add("header_value_truncated")
            text = text[:max_chars]
        # A valid name is ASCII: lower-casing the bytes is lower-casing the text.
        headers.append((name.lower().decode("ascii"), decode_words(text, defects) if "=?" in text else text))
    return headers


def decode_words(value: str, defects: set[str] | None = None) -> str:
    """Decode RFC 2047 encoded words; decoded CR/LF or NUL become a defect and a space.

    The result is safe to log or re-emit as one line: it never holds a line
    break (CVE-2024-6923 re-emits a decoded newline as a new header).
    """
    defects = defects if defects is not None else set()
    if "=?" not in value:
        return value
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
        codec, flagged = _word_codec(charset)
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
            return codecs.lookup(name).name, flagged
        except LookupError:
            pass
    return "utf-8", True


def _decode_text(data: bytes, codec: str, defects: set[str]) -> str:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
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
        body, stuffed = _SEMICOLON_RUN.subn(b"; ", body)
    else:
        stuffed = 0
    body = _bound_containers(body, limits, parsed.defects)
    mime_pairs = []
    for index in [i for i, name in enumerate(parsed.names) if name in _MIME_HEADERS]:
        value, n = _SEMICOLON_RUN_STR.subn("; ", parsed._value(index))
        stuffed += n
        mime_pairs.append((parsed.names[index], value))
    if stuffed:
        parsed.defects.add("header_param_stuffing")
    if parsed.get("content-type") is not None and parsed.get("mime-version") is None:
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
    allowed = limits.max_mime_depth * 2
    # Every match holds an "=" and "boundary" in some case: when the body has no
    # more of either than allowed, nothing can be cut (C passes, no regex).
    if body.count(b"=") <= allowed or body.lower().count(b"boundary") <= allowed:
        return body
    for count, match in enumerate(_BOUNDARY_PARAM.finditer(body), start=1):
        if count > allowed:
            defects.add("mime_depth_exceeded")
            return body[: body.rfind(b"\n", 0, match.start()) + 1]
    return body


def _safe(call, default):
    """Run one stdlib accessor; any exception from hostile input means ``default``."""
    try:
        return call()
    except Exception:  # noqa: BLE001 - the stdlib raises many kinds on bad input
        return default
