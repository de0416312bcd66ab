"""A lean MIME walker for well-formed bodies, agreeing exactly with the compat32 walk.

The robust path in ``parse`` hands the body to the stdlib's ``compat32``
feed parser, which splits every line in Python and costs more than all the
features together. Most mail is well formed: the boundaries are where the
headers say, each part has a header block, nothing is nested too deep. For
that mail this module finds the parts with ``bytes.find`` and decodes them
with ``binascii``, computing each value (content type, parameters, filename,
charset, payload) the way ``email.message.Message`` does under ``compat32``.

It never guesses: whenever the input is anything the feed parser would treat
specially (a defect it would record, a missing or empty boundary, RFC 2231
parameters, backslashes in parameters, ``message/*`` parts, digests, lone
carriage returns, line breaks ``str.splitlines`` knows but email does not,
non-ASCII part headers, too many parts or levels), ``walk`` returns None and
the caller takes the robust path. ``tests/unit/test_parse_paths.py`` proves
that both paths give the same parse on the corpus and the shipped emails.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from mailscore.twins import twin

# A part header line the feed parser reads as a header (headerRE, less "From ").
_PART_HEADER = re.compile(rb"[!-9;-~]+:")
# Characters that end a line for str.splitlines (which the feed parser uses)
# but are not CR or LF: their presence changes where compat32 sees lines.
_ODD_LINE_BREAKS = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")
_CTE_MULTIPART_OK = ("7bit", "8bit", "binary")


class Fallback(Exception):
    """The body needs the robust parser."""


@dataclass
class Leaf:
    """One non-multipart part, in walk order, as the robust walk would see it."""

    content_type: str
    data: bytes
    filename: str | None
    disposition: str
    charset: Callable[[], str | None]
    size: int | None = None  # len of the decoded payload when ``data`` was not decoded (b"")


@dataclass
class Walk:
    leaves: list[Leaf]
    parts: int  # every part visited, multipart containers included


def walk(body: bytes, root_headers: list[tuple[str, str]], *, max_parts: int, max_depth: int) -> Walk | None:
    """The body's leaves as compat32 would give them, or None when unsure.

    ``root_headers`` are the (lower-case name, value) MIME headers of the
    message, exactly as the robust path writes them above the body.
    """
    try:
        if any(not _clean_header_value(v) for _, v in root_headers):
            raise Fallback
        if not root_headers:
            body = b"\n" + body  # the robust path's bare "\n\n" separator leaves one newline
        walk_state = Walk([], 0)
        _visit(_Headers(root_headers), body, walk_state, 0, max_parts, max_depth, root=True)
        return walk_state
    except Fallback:
        return None


class _Headers:
    """First-occurrence lookup of a part's headers, as ``Message.get`` does."""

    __slots__ = ("pairs", "first")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.first = dict(reversed(pairs))  # earlier pairs are inserted last and win

    def get(self, name: str) -> str | None:
        return self.first.get(name)

    def repeats(self, name: str) -> bool:
        """Whether ``name`` occurs more than once."""
        return len(self.first) != len(self.pairs) and sum(1 for key, _ in self.pairs if key == name) > 1


def _visit(headers: _Headers, body: bytes, state: Walk, depth: int, max_parts: int, max_depth: int, *, root: bool,
           root_checked: bool | None = None) -> None:
    state.parts += 1
    if state.parts > max_parts:
        raise Fallback
    ctype = content_type(headers.get("content-type"))
    maintype = ctype.split("/", 1)[0]
    if maintype == "message" or ctype == "multipart/digest":
        raise Fallback
    if maintype != "multipart":
        state.leaves.append(_leaf(headers, ctype, body))
        return
    if depth >= max_depth:
        raise Fallback
    boundary = get_param(headers.get("content-type"), "boundary")
    if boundary is None:
        raise Fallback
    boundary = unquote(boundary).rstrip()
    cte = headers.get("content-transfer-encoding")
    if not boundary or not boundary.isascii() or (cte is not None and cte.lower() not in _CTE_MULTIPART_OK):
        raise Fallback
    if root_checked is None:
        # Every nested body is a slice of this one: checked once, for all of them.
        if odd_line_breaks(body):
            raise Fallback
        root_checked = True
    children = _split(body, boundary.encode("ascii"))
    if not children:
        raise Fallback
    for child in children:
        child_headers, child_body = _part(child)
        _visit(child_headers, child_body, state, depth + 1, max_parts, max_depth, root=False, root_checked=root_checked)


def _odd_line_breaks(body: bytes) -> bool:
    """A line break str.splitlines knows and email does not, or a CR without LF; ``_native`` has the compiled twin."""
    return any(odd in body for odd in _ODD_LINE_BREAKS) or (b"\r" in body and body.count(b"\r") != body.count(b"\r\n"))


odd_line_breaks = twin("odd_line_breaks", _odd_line_breaks)


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` lines, each without its last line break."""
    separator = b"--" + boundary
    parts: list[bytes] = []
    start: int | None = None
    pos = 0
    while True:
        index = body.find(separator, pos)
        if index < 0:
            raise Fallback  # no closing boundary: the feed parser records a defect
        pos = index + len(separator)
        if index and body[index - 1] != 0x0A:
            continue  # not at the start of a line
        eol = body.find(b"\n", pos)
        rest = body[pos : eol if eol >= 0 else len(body)]
        closing = rest.startswith(b"--")
        tail = rest[2:] if closing else rest
        if tail.endswith(b"\r"):
            tail = tail[:-1]
        if tail.strip(b" \t"):
            continue  # "--boundaryX": another string, not this boundary
        if start is not None:
            parts.append(_strip_eol(body[start:index]))
        if closing:
            return parts
        if eol < 0:
            raise Fallback
        start = eol + 1
        pos = start


def _strip_eol(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def _part(raw: bytes) -> tuple[_Headers, bytes]:
    """A part's headers (values as compat32 stores them) and its body."""
    fields: list[list[bytes]] = []  # each field's lines
    pos = 0
    current: list[bytes] | None = None
    while True:
        eol = raw.find(b"\n", pos)
        if eol < 0:
            raise Fallback  # no blank line before the next boundary
        line = raw[pos : eol + 1]
        pos = eol + 1
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if current is None:
                raise Fallback
            current.append(line)
            continue
        if line.startswith(b"From ") or not _PART_HEADER.match(line):
            raise Fallback
        current = [line]
        fields.append(current)
    headers = []
    for lines in fields:
        source = b"".join(lines)
        if not source.isascii():
            raise Fallback
        name, _, value = source.decode("ascii").partition(":")
        headers.append((name.lower(), value.lstrip(" \t").rstrip("\r\n")))
    return _Headers(headers), raw[pos:]


def _leaf(headers: _Headers, ctype: str, body: bytes) -> Leaf:
    if headers.repeats("content-type") or headers.repeats("content-transfer-encoding"):
        raise Fallback
    cte = (headers.get("content-transfer-encoding") or "").lower()
    size = None
    if cte == "quoted-printable":
        data = binascii.a2b_qp(body)
    elif cte == "base64":
        encoded = body.translate(None, b"\r\n")  # what joining body.splitlines() gives
        # Only text/plain and text/html payloads are read; of any other part only
        # the decoded length counts, which well-formed base64 gives without decoding.
        size = None if ctype in ("text/plain", "text/html") else _b64_size(encoded)
        data = _b64decode(encoded) if size is None else b""
    elif cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        raise Fallback
    else:
        data = body
    disposition = headers.get("content-disposition")
    filename = get_param(disposition, "filename")
    if filename is None:
        filename = get_param(headers.get("content-type"), "name")
    if filename is not None:
        filename = unquote(unquote(filename)).strip()
    disposition_type = split_param(disposition)[0].lower() if disposition is not None else ""
    content_type_value = headers.get("content-type")
    if ctype in ("text/plain", "text/html"):
        # Read now, inside the walk: the caller reads it outside, where a Fallback
        # (an RFC 2231 "charset*=") would escape instead of choosing the robust walk.
        declared = charset(content_type_value)
        return Leaf(ctype, data, filename, disposition_type, lambda: declared, size)
    return Leaf(ctype, data, filename, disposition_type, lambda: charset(content_type_value), size)


def _b64decode(encoded: bytes) -> bytes:
    """What compat32's base64 payload decoding returns (defects are not read back)."""
    pad = len(encoded) % 4
    try:
        return base64.b64decode(encoded + (b"==="[: 4 - pad] if pad else b""), validate=True)
    except binascii.Error:
        pass
    for extra in (b"", b"=="):
        try:
            return base64.b64decode(encoded + extra, validate=False)
        except binascii.Error:
            continue
    return encoded


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_size(encoded: bytes) -> int | None:
    """``len(_b64decode(encoded))`` when ``encoded`` is strictly valid base64 (after the
    padding ``_b64decode`` adds), else None: then only decoding can tell."""
    n = len(encoded)
    stripped = encoded.rstrip(b"=")
    pads = n - len(stripped)
    if pads > 2 or stripped.translate(None, _B64_ALPHABET):
        return None
    rest = n % 4
    if rest == 0:
        return n // 4 * 3 - pads
    if pads or rest == 1:
        return None
    return n // 4 * 3 + rest - 1


def _clean_header_value(value: str) -> bool:
    """ASCII without control characters: compat32 reads it as we do."""
    return value.isascii() and value.isprintable()


# --- header parameters, as email.message.Message computes them under compat32 ---


# The parameter readers are pure functions of a header value, and part headers
# repeat ("text/plain; charset=utf-8"): each is cached. Values are capped in
# length by the parser, so the caches are bounded in memory too.
@lru_cache(maxsize=2048)
def split_param(value: str) -> tuple[str, str | None]:
    main, sep, rest = str(value).partition(";")
    return (main.strip(), rest.strip()) if sep else (main.strip(), None)


@lru_cache(maxsize=2048)
def content_type(value: str | None) -> str:
    if value is None:
        return "text/plain"
    ctype = split_param(value)[0].lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


@lru_cache(maxsize=4096)
def get_param(value: str | None, name: str) -> str | None:
    """The first parameter ``name`` of a header value (quotes kept), or None."""
    if value is None:
        return None
    for key, val in _params(value):
        if key.lower() == name:
            return val
    return None


@lru_cache(maxsize=2048)
def charset(content_type_value: str | None) -> str | None:
    value = get_param(content_type_value, "charset")
    if value is None:
        return None
    value = unquote(value)
    return value.lower() if value.isascii() else None


def unquote(value: str) -> str:
    if len(value) > 1:
        if value.startswith('"') and value.endswith('"'):
            return value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        if value.startswith("<") and value.endswith(">"):
            return value[1:-1]
    return value


def _params(value: str) -> list[tuple[str, str]]:
    """compat32's parameter split; Fallback for anything its RFC 2231 decoding would touch."""
    s = ";" + value
    out = []
    while s[:1] == ";":
        s = s[1:]
        end = s.find(";")
        while end > 0 and (s.count('"', 0, end) - s.count('\\"', 0, end)) % 2:
            end = s.find(";", end + 1)
        if end < 0:
            end = len(s)
        field = s[:end]
        if "=" in field:
            i = field.index("=")
            name, val = field[:i].strip().lower(), field[i + 1 :].strip()
        else:
            name, val = field.strip(), ""
        if "*" in name or "\\" in val:
            raise Fallback
        out.append((name, val))
        s = s[end:]
    return out
