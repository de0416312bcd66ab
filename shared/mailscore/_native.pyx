# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True
"""Compiled twins of two pure-Python hot loops; each must equal its twin exactly.

``tree_margin`` is ``trees.TreeEvaluator.margin`` (the Python twin) and
``split_header_fields`` is the line loop of ``parse._parse_headers``. The
module is optional: when it is not built (no compiler where the package was
installed), the Python twins run and the results are the same. Tests in
``tests/unit/test_native.py`` hold each pair equal on the corpus, on the
hostile cases and on generated inputs. Bounds checks stay on: this reads
attacker-controlled bytes.
"""

from libc.math cimport isnan


def tree_margin(const float[::1] row, const Py_ssize_t[::1] feature, const float[::1] threshold,
                const unsigned char[::1] go_left_default, const Py_ssize_t[::1] left,
                const Py_ssize_t[::1] right, const Py_ssize_t[::1] roots, int depth, float base_margin):
    """The raw score of one row: each tree walked from its root to its leaf, summed in float32.

    The sum runs in tree order from the base margin in single precision, as
    XGBoost and ``np.add.accumulate(..., dtype=float32)`` do, so the result is
    bit-identical. A leaf points at itself; its threshold holds its value.
    At most ``depth`` steps per tree, whatever the arrays say.
    """
    cdef float total = base_margin
    cdef float x
    cdef Py_ssize_t t, node, nxt
    cdef int step
    cdef Py_ssize_t nodes = feature.shape[0]
    if threshold.shape[0] != nodes or go_left_default.shape[0] != nodes or left.shape[0] != nodes \
            or right.shape[0] != nodes:
        raise ValueError("tree arrays differ in length")
    for t in range(roots.shape[0]):
        node = roots[t]
        for step in range(depth):  # as many steps as the deepest tree, like the Python twin
            nxt = left[node]
            if nxt == node:  # a leaf
                break
            x = row[feature[node]]
            if isnan(x):
                node = nxt if go_left_default[node] else right[node]
            elif x < threshold[node]:
                node = nxt
            else:
                node = right[node]
        total = total + threshold[node]
    return total


# Flags of split_header_fields, as parse._split_header_fields returns them.
CONTINUATION_WITHOUT_FIELD = 1
LINE_INVALID = 2
HEADERS_TRUNCATED = 4


cdef inline bint _is_space(unsigned char c):
    return c == 32 or 9 <= c <= 13  # what bytes.strip() strips


def split_header_fields(bytes block, Py_ssize_t max_headers):
    """The header block's fields as (lower-case name, unfolded value bytes), and flags.

    The compiled twin of ``parse._split_header_fields``: lines end at CR, LF
    or CRLF (``bytes.splitlines``); a line starting with a space or tab
    continues the last valid field; a field's value is its stripped lines
    joined by one space.
    """
    cdef const unsigned char[::1] b = block
    cdef Py_ssize_t n = b.shape[0]
    cdef Py_ssize_t pos = 0, start, end, colon, i, ls, le, ne
    cdef int flags = 0
    cdef bint have_field = False, valid
    cdef unsigned char c
    cdef list fields = []
    cdef list pieces = None
    while pos < n:
        start = pos
        end = start
        while end < n and b[end] != 10 and b[end] != 13:
            end += 1
        if end < n and b[end] == 13 and end + 1 < n and b[end + 1] == 10:
            pos = end + 2
        else:
            pos = end + 1
        if end > start and (b[start] == 32 or b[start] == 9):
            if have_field:
                ls, le = start, end
                while ls < le and _is_space(b[ls]):
                    ls += 1
                while le > ls and _is_space(b[le - 1]):
                    le -= 1
                pieces.append(block[ls:le])
            else:
                flags |= CONTINUATION_WITHOUT_FIELD
            continue
        colon = -1
        for i in range(start, end):
            if b[i] == 58:
                colon = i
                break
        if colon < 0:
            for i in range(start, end):
                if not _is_space(b[i]):
                    flags |= LINE_INVALID
                    break
            continue
        ne = colon
        while ne > start and _is_space(b[ne - 1]):
            ne -= 1
        valid = ne > start
        for i in range(start, ne):
            c = b[i]
            if c < 0x21 or c > 0x7E or c == 0x3A:
                valid = False
                break
        if not valid:
            flags |= LINE_INVALID
            continue
        if len(fields) >= max_headers:
            flags |= HEADERS_TRUNCATED
            break
        ls, le = colon + 1, end
        while ls < le and _is_space(b[ls]):
            ls += 1
        while le > ls and _is_space(b[le - 1]):
            le -= 1
        pieces = [block[ls:le]]
        fields.append((block[start:ne].lower().decode("ascii"), pieces))
        have_field = True
    return [(name, b" ".join(parts) if len(parts) > 1 else parts[0]) for name, parts in fields], flags
