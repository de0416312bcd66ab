# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True
"""Compiled twins of the scoring core's hot loops; each must equal its pure-Python twin exactly.

Each function or class here names the Python code it stands for (the
header reader and encoded-word decoder of ``parse``, the body scans of
``parse`` and ``mime``, the HTML reader's scans of ``urls``, the tree walk
of ``trees``). The module is optional: where it is not built (no C
compiler or no Cython where the package was installed), or with
``MAILSCORE_PURE_PYTHON=1``, the Python twins run and the results are the
same. ``tests/unit/test_native.py`` holds each pair equal on the corpus,
the shipped emails, the hostile cases and generated inputs, and compares a
whole pure-Python run of parse and features with this one. This reads
attacker-controlled bytes: memoryviews keep their bounds checks, and every
raw pointer read is preceded by the index check it needs.
"""

import binascii

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport (Py_UNICODE_ISALNUM, Py_UNICODE_ISSPACE, PyUnicode_DATA, PyUnicode_DecodeASCII,
                              PyUnicode_DecodeUTF8, PyUnicode_FindChar, PyUnicode_KIND, PyUnicode_READ)
from libc.math cimport isnan
from libc.string cimport memchr, memcpy

_a2b_base64 = binascii.a2b_base64
_a2b_qp = binascii.a2b_qp
_BinasciiError = binascii.Error


cdef class CompiledTrees:
    """The flattened trees of ``trees.TreeEvaluator``, walked in C: its ``numpy_margin`` is the Python twin.

    The arrays are taken once, at construction. Each tree is walked from its
    root to its leaf (a leaf points at itself and its threshold holds its
    value), at most ``depth`` steps whatever the arrays say, and the leaves
    are summed in tree order from the base margin in single precision, as
    XGBoost and ``np.add.accumulate(..., dtype=float32)`` do: bit-identical.
    """

    cdef const Py_ssize_t[::1] feature
    cdef const float[::1] threshold
    cdef const unsigned char[::1] go_left_default
    cdef const Py_ssize_t[::1] left
    cdef const Py_ssize_t[::1] right
    cdef const Py_ssize_t[::1] roots
    cdef int depth
    cdef float base_margin
    cdef readonly Py_ssize_t width  # a row must hold at least this many features

    def __init__(self, const Py_ssize_t[::1] feature, const float[::1] threshold,
                 const unsigned char[::1] go_left_default, const Py_ssize_t[::1] left,
                 const Py_ssize_t[::1] right, const Py_ssize_t[::1] roots, int depth, float base_margin):
        cdef Py_ssize_t nodes = feature.shape[0], i
        if threshold.shape[0] != nodes or go_left_default.shape[0] != nodes or left.shape[0] != nodes \
                or right.shape[0] != nodes:
            raise ValueError("tree arrays differ in length")
        self.width = 0
        for i in range(nodes):
            if feature[i] < 0 or left[i] < 0 or left[i] >= nodes or right[i] < 0 or right[i] >= nodes:
                raise ValueError("a tree array points outside the trees")
            if feature[i] + 1 > self.width:
                self.width = feature[i] + 1
        for i in range(roots.shape[0]):
            if roots[i] < 0 or roots[i] >= nodes:
                raise ValueError("a root points outside the trees")
        self.feature, self.threshold, self.go_left_default = feature, threshold, go_left_default
        self.left, self.right, self.roots = left, right, roots
        self.depth, self.base_margin = depth, base_margin

    cdef float _margin(self, const float[::1] row) noexcept:
        cdef float total = self.base_margin
        cdef float x
        cdef Py_ssize_t t, node, nxt
        cdef int step
        for t in range(self.roots.shape[0]):
            node = self.roots[t]
            for step in range(self.depth):
                nxt = self.left[node]
                if nxt == node:  # a leaf
                    break
                x = row[self.feature[node]]
                if isnan(x):
                    node = nxt if self.go_left_default[node] else self.right[node]
                elif x < self.threshold[node]:
                    node = nxt
                else:
                    node = self.right[node]
            total = total + self.threshold[node]
        return total

    def margin(self, const float[::1] row):
        """The raw score of one row, as a float holding the float32 value."""
        if row.shape[0] < self.width:
            raise ValueError("the row has fewer features than the trees read")
        return self._margin(row)

    def margins(self, const float[:, ::1] rows):
        """``margin`` of each row of a C-contiguous 2-D float32 array, as a list."""
        cdef Py_ssize_t i
        if rows.shape[1] < self.width:
            raise ValueError("the rows have fewer features than the trees read")
        return [self._margin(rows[i]) for i in range(rows.shape[0])]


cdef inline bint _is_space(unsigned char c):
    return c == 32 or 9 <= c <= 13  # what bytes.strip() strips


cdef inline bint _is_ascii_letter(Py_UCS4 c):
    return (65 <= c <= 90) or (97 <= c <= 122)


def strip_tags(str text):
    """``urls._TAG.sub(" ", text)``: each tag, comment-like ``<!...>`` or ``<?...>`` becomes one space.

    A match starts at "<" followed by a letter, "/" and a letter, "!" or "?",
    and ends at the first ">" when no "<" comes before it and at most 4,096
    characters lie between; otherwise the "<" is text.
    """
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t i = 0, last = 0, start, j, limit
    cdef Py_UCS4 c
    cdef unsigned int kind = PyUnicode_KIND(text)
    cdef void *data = PyUnicode_DATA(text)
    cdef list pieces = []
    while i < n:
        i = PyUnicode_FindChar(text, 60, i, n, 1)  # "<"
        if i < 0:
            break
        start = -1
        if i + 1 < n:
            c = PyUnicode_READ(kind, data, i + 1)
            if c == 47:  # "/"
                if i + 2 < n and _is_ascii_letter(PyUnicode_READ(kind, data, i + 2)):
                    start = i + 3
            elif _is_ascii_letter(c) or c == 33 or c == 63:  # a letter, "!", "?"
                start = i + 2
        if start < 0:
            i += 1
            continue
        j = start
        limit = start + 4096
        if limit > n:
            limit = n
        while j < limit:
            c = PyUnicode_READ(kind, data, j)
            if c == 60 or c == 62:
                break
            j += 1
        if j < n and PyUnicode_READ(kind, data, j) == 62:  # ">"
            pieces.append(text[last:i])
            pieces.append(" ")
            i = last = j + 1
        else:
            i += 1
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


cdef inline bint _is_run_byte(unsigned char c):
    return c == 32 or c == 9 or c == 59  # " ", tab, ";"


def collapse_semicolon_runs(bytes body):
    """``parse._SEMICOLON_RUN.subn(b"; ", body)``: a ";" and 15 or more separators after it become "; ".

    A separator is a space, a tab, a ";", or a line break (LF or CRLF)
    followed by a space or tab. Returns (body, runs replaced).
    """
    cdef const unsigned char *p = body
    cdef Py_ssize_t n = len(body)
    cdef Py_ssize_t i = 0, last = 0, j, units
    cdef const void *found
    cdef list pieces = []
    cdef Py_ssize_t count = 0
    while i < n:
        found = memchr(p + i, 59, <size_t>(n - i))
        if found == NULL:
            break
        i = <const unsigned char *>found - p
        j = i + 1
        units = 0
        while j < n:
            if _is_run_byte(p[j]):
                j += 1
            elif p[j] == 10 and j + 1 < n and (p[j + 1] == 32 or p[j + 1] == 9):
                j += 2
            elif p[j] == 13 and j + 2 < n and p[j + 1] == 10 and (p[j + 2] == 32 or p[j + 2] == 9):
                j += 3
            else:
                break
            units += 1
        if units >= 15:
            pieces.append(body[last:i])
            pieces.append(b"; ")
            count += 1
            i = last = j
        else:
            i += 1
    if not count:
        return body, 0
    pieces.append(body[last:])
    return b"".join(pieces), count


cdef inline bint _is_ascii_space(unsigned char c):
    return c == 32 or 9 <= c <= 13  # what \s matches in a bytes pattern


cdef inline unsigned char _lower(unsigned char c):
    return c + 32 if 65 <= c <= 90 else c


def nth_boundary_param(bytes body, Py_ssize_t allowed):
    """Where the ``allowed + 1``-th match of ``(?i)boundary\\s*=`` starts in ``body``, or -1.

    Each match ends at a "=" whose preceding non-space bytes end with
    "boundary" in any ASCII case, so the "=" are read, not every byte.
    """
    cdef const unsigned char *p = body
    cdef Py_ssize_t n = len(body)
    cdef Py_ssize_t i = 0, q, k, seen = 0
    cdef const void *found
    cdef const char *word = b"boundary"
    cdef bint same
    while i < n:
        found = memchr(p + i, 61, <size_t>(n - i))
        if found == NULL:
            return -1
        i = <const unsigned char *>found - p
        q = i
        while q > 0 and _is_ascii_space(p[q - 1]):
            q -= 1
        if q >= 8:
            same = True
            for k in range(8):
                if _lower(p[q - 8 + k]) != <unsigned char>word[k]:
                    same = False
                    break
            if same:
                seen += 1
                if seen > allowed:
                    return q - 8
        i += 1
    return -1


def odd_line_breaks(bytes body):
    """Whether ``body`` holds a line break ``str.splitlines`` knows and email does not, or a CR without LF."""
    cdef const unsigned char *p = body
    cdef Py_ssize_t n = len(body)
    cdef Py_ssize_t i = 0
    cdef const void *found
    cdef unsigned char odd
    for odd in (11, 12, 28, 29, 30):
        if n and memchr(p, odd, <size_t>n) != NULL:
            return True
    while i < n:
        found = memchr(p + i, 13, <size_t>(n - i))
        if found == NULL:
            return False
        i = <const unsigned char *>found - p
        if i + 1 >= n or p[i + 1] != 10:
            return True
        i += 2
    return False


_B64_PAD = ("", "===", "==", "=")


cdef Py_ssize_t _encoded_word_end(str value, unsigned int kind, void *data, Py_ssize_t n, Py_ssize_t i,
                                  Py_ssize_t *charset_end, Py_ssize_t *payload_start):
    """End of the encoded word ``=?charset?X?payload?=`` starting at ``i``, or -1.

    The ``parse._ENCODED_WORD`` pattern: a charset of 1 to 64 characters and a
    payload of any length, neither holding "?" or whitespace (``str.isspace``,
    which is what ``\\s`` matches in a str pattern).
    """
    cdef Py_ssize_t j = i + 2, limit
    cdef Py_UCS4 c
    if i + 1 >= n or PyUnicode_READ(kind, data, i) != 61 or PyUnicode_READ(kind, data, i + 1) != 63:
        return -1
    limit = j + 64
    if limit > n:
        limit = n
    while j < limit:
        c = PyUnicode_READ(kind, data, j)
        if c == 63 or Py_UNICODE_ISSPACE(c):
            break
        j += 1
    if j == i + 2 or j + 2 >= n or PyUnicode_READ(kind, data, j) != 63:
        return -1
    charset_end[0] = j
    c = PyUnicode_READ(kind, data, j + 1)
    if not (c == 66 or c == 98 or c == 81 or c == 113) or PyUnicode_READ(kind, data, j + 2) != 63:  # B b Q q, "?"
        return -1
    j += 3
    payload_start[0] = j
    while j < n:
        c = PyUnicode_READ(kind, data, j)
        if c == 63 or Py_UNICODE_ISSPACE(c):
            break
        j += 1
    if j + 1 >= n or PyUnicode_READ(kind, data, j) != 63 or PyUnicode_READ(kind, data, j + 1) != 61:
        return -1
    return j + 2


cdef inline int _b64_value(unsigned int c) noexcept:  # a number: Py_UCS4 arithmetic would make a str
    if 65 <= c <= 90:
        return c - 65
    if 97 <= c <= 122:
        return c - 71
    if 48 <= c <= 57:
        return c + 4
    if c == 43:  # "+"
        return 62
    if c == 47:  # "/"
        return 63
    return -1


cdef Py_ssize_t _b64_plain(unsigned int kind, void *data, Py_ssize_t start, Py_ssize_t stop, unsigned char *out):
    """Decode ``start:stop`` into ``out`` when it is plain base64 (alphabet only, not one more than a
    multiple of 4 long): what strict ``a2b_base64`` gives once the decoder pads it, unused bits
    ignored as it ignores them. -1 for anything else, which binascii itself then reads."""
    cdef Py_ssize_t length = stop - start, i, o = 0
    cdef int v, acc = 0, bits = 0
    if length % 4 == 1:
        return -1
    for i in range(start, stop):
        v = _b64_value(PyUnicode_READ(kind, data, i))
        if v < 0:
            return -1
        acc = ((acc << 6) | v) & 0xFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            out[o] = (acc >> bits) & 0xFF
            o += 1
    return o


cdef str _one_line(str text, set defects):
    """A decoded word's text with CR, LF and NUL made spaces (a defect when there were any)."""
    if "\r" in text or "\n" in text or "\x00" in text:
        defects.add("header_crlf_injection")
        return text.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    return text


def decode_words(str value, set defects, word_codec):
    """``parse._decode_words``: RFC 2047 encoded words decoded, their faults added to ``defects``.

    ``word_codec`` is ``parse._word_codec`` (charset -> codec, flagged), a pure
    function: its answer for the previous word's charset is reused. A "B" word
    of plain base64 in a UTF-8 charset is decoded here; every other word goes
    through binascii and ``bytes.decode`` exactly as the Python twin does.
    """
    cdef Py_ssize_t n = len(value)
    cdef Py_ssize_t i = 0, last = 0, end, charset_end = 0, payload_start = 0, size
    cdef unsigned int kind = PyUnicode_KIND(value)
    cdef void *data = PyUnicode_DATA(value)
    cdef list pieces = []
    cdef str charset, payload, codec = None, last_charset = None
    cdef bint flagged = False, base64
    cdef unsigned char *buffer = NULL
    try:
        while i < n:
            i = PyUnicode_FindChar(value, 61, i, n, 1)  # "="
            if i < 0:
                break
            end = _encoded_word_end(value, kind, data, n, i, &charset_end, &payload_start)
            if end < 0:
                i += 1
                continue
            pieces.append(value[last:i])
            charset = value[i + 2 : charset_end]
            base64 = PyUnicode_READ(kind, data, charset_end + 1) in (66, 98)  # "B", "b"
            if charset != last_charset:
                codec, flagged = word_codec(charset)
                last_charset = charset
            if base64 and codec == "utf-8":
                if buffer == NULL:
                    buffer = <unsigned char *>PyMem_Malloc(n)  # a word decodes to fewer bytes than it has characters
                    if buffer == NULL:
                        raise MemoryError()
                size = _b64_plain(kind, data, payload_start, end - 2, buffer)
                if size >= 0:
                    if flagged:
                        defects.add("charset_invalid")
                    pieces.append(_one_line(PyUnicode_DecodeUTF8(<char *>buffer, size, "replace"), defects))
                    last = i = end
                    continue
            payload = value[payload_start : end - 2]
            try:
                if base64:
                    decoded = _a2b_base64(payload + _B64_PAD[len(payload) & 3], strict_mode=True)
                else:
                    decoded = _a2b_qp(payload.replace("_", " ").encode("ascii", "replace"), header=True)
            except (_BinasciiError, ValueError):
                defects.add("encoded_word_invalid")
                pieces.append(value[i:end])  # the word as it was
                last = i = end
                continue
            if flagged:
                defects.add("charset_invalid")
            pieces.append(_one_line(decoded.decode(codec, "replace"), defects))
            last = i = end
    finally:
        PyMem_Free(buffer)
    if not pieces:
        return value
    pieces.append(value[last:])
    return "".join(pieces)


# --- the HTML reader's scans (urls.py) ---------------------------------------

# The character references most HTML mail uses, and what they stand for (urls._COMMON_REFERENCES).
_REFERENCES = (("&nbsp;", "\xa0"), ("&gt;", ">"), ("&lt;", "<"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&"))


def replace_common_references(str text):
    """``text`` with every "&" replaced as ``html.unescape`` would, or None when some "&"
    does not start one of the common references (then ``html.unescape`` must read it)."""
    cdef Py_ssize_t n = len(text)
    cdef Py_ssize_t i = 0, last = 0
    cdef list pieces = []
    cdef str ref, char
    cdef bint found
    while i < n:
        i = PyUnicode_FindChar(text, 38, i, n, 1)  # "&"
        if i < 0:
            break
        found = False
        for ref, char in _REFERENCES:
            if text.startswith(ref, i):
                pieces.append(text[last:i])
                pieces.append(char)
                i = last = i + len(ref)
                found = True
                break
        if not found:
            return None
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


cdef inline bint _ci(Py_UCS4 c, Py_UCS4 letter_char):
    """Whether ``c`` matches the lower-case ASCII ``letter`` under Python's re.IGNORECASE
    for str patterns: its upper case, and for "s" the long s, for "i" the dotted and dotless i."""
    cdef unsigned int code = c, letter = letter_char  # as numbers: Py_UCS4 arithmetic would make a str
    if code == letter or code == letter - 32:
        return True
    if letter == 115:  # s
        return code == 0x17F
    if letter == 105:  # i
        return code == 0x130 or code == 0x131
    return False


cdef inline bint _is_word(Py_UCS4 c):
    return c == 95 or Py_UNICODE_ISALNUM(c)  # what \\b reads in a str pattern


cdef Py_ssize_t _name_at(unsigned int kind, void *data, Py_ssize_t n, Py_ssize_t i, str name):
    """End of ``name`` (lower-case ASCII) read case-insensitively at ``i`` and followed by a
    word boundary, or -1."""
    cdef Py_ssize_t k, m = len(name)
    if i + m > n:
        return -1
    for k in range(m):
        if not _ci(PyUnicode_READ(kind, data, i + k), name[k]):
            return -1
    if i + m < n and _is_word(PyUnicode_READ(kind, data, i + m)):
        return -1
    return i + m


cdef Py_ssize_t _hidden_open(str html, unsigned int kind, void *data, Py_ssize_t n, Py_ssize_t pos,
                             Py_ssize_t *name_end, bint *script):
    """``urls._HIDDEN_OPEN.search(html, pos)``: start of "<script" or "<style" (any case, then a
    word boundary), or -1."""
    cdef Py_ssize_t i = pos, end
    while i < n:
        i = PyUnicode_FindChar(html, 60, i, n, 1)  # "<"
        if i < 0:
            return -1
        end = _name_at(kind, data, n, i + 1, "script")
        if end >= 0:
            name_end[0], script[0] = end, True
            return i
        end = _name_at(kind, data, n, i + 1, "style")
        if end >= 0:
            name_end[0], script[0] = end, False
            return i
        i += 1
    return -1


cdef Py_ssize_t _hidden_close(str html, unsigned int kind, void *data, Py_ssize_t n, Py_ssize_t pos, str name):
    """End of ``urls._HIDDEN_CLOSE[name].search(html, pos)``: "</name", spaces, ">" (any case), or -1."""
    cdef Py_ssize_t i = pos, j, k, m = len(name)
    cdef bint same
    while i < n:
        i = PyUnicode_FindChar(html, 60, i, n, 1)
        if i < 0:
            return -1
        j = i + 1
        if j + m < n and PyUnicode_READ(kind, data, j) == 47:  # "/"
            j += 1
            same = True
            for k in range(m):
                if not _ci(PyUnicode_READ(kind, data, j + k), name[k]):
                    same = False
                    break
            if same:
                j += m
                while j < n and Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, j)):
                    j += 1
                if j < n and PyUnicode_READ(kind, data, j) == 62:  # ">"
                    return j + 1
        i += 1
    return -1


def without_hidden(str html):
    """``urls._without_hidden``: ``html`` less comments and script/style contents."""
    if "<!--" not in html and "<s" not in html and "<S" not in html:
        return html
    cdef Py_ssize_t n = len(html)
    cdef unsigned int kind = PyUnicode_KIND(html)
    cdef void *data = PyUnicode_DATA(html)
    cdef list kept = []
    cdef Py_ssize_t pos = 0, comment, hidden, name_end = 0, end
    cdef bint script = False
    comment = html.find("<!--")
    hidden = _hidden_open(html, kind, data, n, 0, &name_end, &script)
    while comment >= 0 or hidden >= 0:
        # Searches are redone only once the cursor has passed their result: linear overall.
        if comment >= 0 and (hidden < 0 or comment < hidden):
            kept.append(html[pos:comment])
            end = html.find("-->", comment + 4)
            pos = end + 3 if end >= 0 else n
        else:
            kept.append(html[pos:hidden])
            end = _hidden_close(html, kind, data, n, name_end, "script" if script else "style")
            pos = end if end >= 0 else n
        if 0 <= comment < pos:
            comment = html.find("<!--", pos)
        if 0 <= hidden < pos:
            hidden = _hidden_open(html, kind, data, n, pos, &name_end, &script)
    kept.append(html[pos:])
    return " ".join(kept)


def count_forms_scripts(str html):
    """``urls._count_forms_scripts``: how many "<form" and "<script" (any case, then a word boundary)."""
    cdef Py_ssize_t n = len(html)
    cdef unsigned int kind = PyUnicode_KIND(html)
    cdef void *data = PyUnicode_DATA(html)
    cdef Py_ssize_t i = 0, end
    cdef Py_ssize_t forms = 0, scripts = 0
    while i < n:
        i = PyUnicode_FindChar(html, 60, i, n, 1)
        if i < 0:
            break
        end = _name_at(kind, data, n, i + 1, "form")
        if end >= 0:
            forms += 1
            i = end
            continue
        end = _name_at(kind, data, n, i + 1, "script")
        if end >= 0:
            scripts += 1
            i = end
            continue
        i += 1
    return forms, scripts


cdef inline void _strip_span(const unsigned char *p, Py_ssize_t *ls, Py_ssize_t *le) noexcept:
    while ls[0] < le[0] and _is_space(p[ls[0]]):
        ls[0] += 1
    while le[0] > ls[0] and _is_space(p[le[0] - 1]):
        le[0] -= 1


cdef str _header_text(const char *value, Py_ssize_t length, bint ascii, Py_ssize_t max_chars, set defects,
                      word_codec):
    cdef str text
    if ascii:
        text = PyUnicode_DecodeASCII(value, length, NULL)
    else:
        text = PyUnicode_DecodeUTF8(value, length, "replace")
        if "\ufffd" in text:
            defects.add("header_8bit_invalid")
    if len(text) > max_chars:
        defects.add("header_value_truncated")
        text = text[:max_chars]
    if "=?" in text:
        text = decode_words(text, defects, word_codec)
    return text


def read_header_fields(bytes block, Py_ssize_t max_headers, Py_ssize_t max_chars, set defects, word_codec):
    """``parse._read_header_fields``: the header block as (lower-case name, decoded value), faults in ``defects``.

    Lines end at CR, LF or CRLF (``bytes.splitlines``); a line starting with a
    space or tab continues the last valid field (also after invalid lines);
    a field's value is its stripped lines joined by one space, decoded as
    ASCII, else UTF-8 with replacement (flagged), capped at ``max_chars``,
    with its RFC 2047 words decoded. ``word_codec`` is ``parse._word_codec``.
    """
    cdef const unsigned char *p = block
    cdef Py_ssize_t n = len(block)
    cdef Py_ssize_t pos = 0, start, end, colon, i, ls, le, ne, vlen = 0, fields = 0
    cdef const void *found
    cdef bint open_field = False, ascii = True, valid
    cdef unsigned char c
    cdef list headers = []
    cdef str name = None
    # A value is its field's pieces joined by single spaces, each space standing for at least one
    # line-break byte between them: it never holds more than the block. So do the names.
    cdef char *value = <char *>PyMem_Malloc(n + 1)
    cdef char *lowered = <char *>PyMem_Malloc(n + 1)
    if value == NULL or lowered == NULL:
        PyMem_Free(value)
        PyMem_Free(lowered)
        raise MemoryError()
    try:
        while pos < n:
            start = pos
            found = memchr(p + start, 10, <size_t>(n - start))  # the line ends at the first LF or CR
            end = <const unsigned char *>found - p if found != NULL else n
            found = memchr(p + start, 13, <size_t>(end - start))
            if found != NULL:
                end = <const unsigned char *>found - p
            pos = end + 2 if (end + 1 < n and p[end] == 13 and p[end + 1] == 10) else end + 1
            if end > start and (p[start] == 32 or p[start] == 9):
                if open_field:
                    ls, le = start, end
                    _strip_span(p, &ls, &le)
                    if vlen + 1 + (le - ls) > n:
                        raise AssertionError("header value outgrew its block")
                    value[vlen] = 32
                    memcpy(value + vlen + 1, p + ls, <size_t>(le - ls))
                    vlen += 1 + (le - ls)
                    for i in range(ls, le):
                        if p[i] >= 0x80:
                            ascii = False
                            break
                else:
                    defects.add("header_continuation_without_field")
                continue
            found = memchr(p + start, 58, <size_t>(end - start))  # ":"
            if found == NULL:
                for i in range(start, end):
                    if not _is_space(p[i]):
                        defects.add("header_line_invalid")
                        break
                continue
            colon = <const unsigned char *>found - p
            ne = colon
            while ne > start and _is_space(p[ne - 1]):
                ne -= 1
            valid = ne > start
            for i in range(start, ne):
                c = p[i]
                if c < 0x21 or c > 0x7E:  # no ":" can come before the first one
                    valid = False
                    break
            if not valid:
                defects.add("header_line_invalid")
                continue
            if fields >= max_headers:
                defects.add("headers_truncated")
                break
            if open_field:
                headers.append((name, _header_text(value, vlen, ascii, max_chars, defects, word_codec)))
            for i in range(start, ne):
                c = p[i]
                lowered[i - start] = c + 32 if 65 <= c <= 90 else c
            name = PyUnicode_DecodeASCII(lowered, ne - start, NULL)
            ls, le = colon + 1, end
            _strip_span(p, &ls, &le)
            memcpy(value, p + ls, <size_t>(le - ls))
            vlen = le - ls
            ascii = True
            for i in range(ls, le):
                if p[i] >= 0x80:
                    ascii = False
                    break
            open_field = True
            fields += 1
        if open_field:
            headers.append((name, _header_text(value, vlen, ascii, max_chars, defects, word_codec)))
    finally:
        PyMem_Free(value)
        PyMem_Free(lowered)
    return headers
