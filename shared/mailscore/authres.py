"""Authentication-Results (RFC 8601) as real MTAs write them, trusted selectively.

Only headers whose authserv-id is one of the deployment's own receiving MTAs
count: any sender can write an ``Authentication-Results`` header, so one
from anywhere else (or with no authserv-id at all) is ignored. Values are
read with comments and quoted strings in mind, common non-standard spellings
of pass and fail are mapped, and anything unrecognised is ``unknown``, which
is never treated as pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

METHODS = ("spf", "dkim", "dmarc")
_PASS = {"pass", "success", "ok", "passed", "dkim_pass", "spf_pass", "dmarc_pass", "bestguesspass"}
_FAIL = {"fail", "failed", "failure", "hardfail", "reject", "dkim_fail", "spf_fail", "dmarc_fail"}
_SOFT = {"softfail", "neutral", "policy", "quarantine"}
_NONE = {"none", "no", "nodata", "not_signed", "unsigned"}
_ERROR = {"temperror", "permerror", "error"}
# Best outcome wins when a trusted header reports a method twice (several DKIM signatures).
_RANK = {"pass": 5, "softfail": 3, "fail": 4, "none": 1, "error": 2, "unknown": 0}
_PROPERTIES = tuple((prop, re.compile(re.escape(prop) + r"\s*=\s*([^\s;]+)", re.I))
                    for prop in ("header.from", "header.d", "smtp.mailfrom"))
_METHOD_RESULT = re.compile(r"^\s*([a-z0-9_-]+)(?:/[0-9]+)?\s*=\s*([a-z0-9_\-]+)", re.I)


@dataclass
class AuthResults:
    """Per method, the normalised result from trusted headers (``unknown`` if none)."""

    results: dict[str, str] = field(default_factory=lambda: {m: "unknown" for m in METHODS})
    trusted_headers: int = 0
    untrusted_headers: int = 0
    # header.from / header.d / smtp.mailfrom domains seen in trusted results
    domains: dict[str, str] = field(default_factory=dict)


def normalise_result(token: str) -> str:
    """Map a result token to pass, fail, softfail, none, error or unknown."""
    token = token.strip().lower()
    token = token.split("(", 1)[0]
    if token in _PASS:
        return "pass"
    if token in _FAIL:
        return "fail"
    if token in _SOFT:
        return "softfail"
    if token in _NONE:
        return "none"
    if token in _ERROR:
        return "error"
    return "unknown"


def strip_comments(value: str) -> str:
    """Remove (nested) RFC 5322 comments outside quoted strings; blank quoted strings.

    Quoted strings are kept as ``""`` so a ``;`` inside a quoted reason never
    splits a result.
    """
    if "\\" not in value and '"' not in value:
        return _strip_plain_comments(value) if "(" in value else value
    out: list[str] = []
    depth = 0
    in_quote = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        if in_quote:
            if ch == '"':
                in_quote = False
                out.append('"')
            continue
        if depth:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if ch == "(":
            depth = 1
            out.append(" ")
        elif ch == '"':
            in_quote = True
            out.append('"')
        else:
            out.append(ch)
    return "".join(out)


_PAREN = re.compile(r"[()]")


def _strip_plain_comments(value: str) -> str:
    """``strip_comments`` for a value with no quotes or backslashes: slices between parentheses."""
    out: list[str] = []
    depth = 0
    pos = 0
    for match in _PAREN.finditer(value):
        if match.group() == "(":
            if depth == 0:
                out.append(value[pos : match.start()])
                out.append(" ")
            depth += 1
        elif depth:  # a ")" outside any comment is kept as text
            depth -= 1
            if depth == 0:
                pos = match.end()
    if depth == 0:
        out.append(value[pos:])
    return "".join(out)


def parse_authentication_results(values: list[str], trusted_ids: tuple[str, ...]) -> AuthResults:
    """Combine every trusted ``Authentication-Results`` value into one result set."""
    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    auth = AuthResults()
    for value in values:
        if _untrusted_at_a_glance(value, trusted):
            auth.untrusted_headers += 1
        else:
            read_value(value, trusted, auth)
    return auth


def _untrusted_at_a_glance(value: str, trusted: set[str]) -> bool:
    """Whether the authserv-id, read without stripping comments, is surely untrusted.

    Only when nothing before the first ";" is a comment, a quote or an escape,
    which stripping comments would change; otherwise False (read it in full).
    """
    first = value.split(";", 1)[0]
    if "(" in first or '"' in first or "\\" in first:
        return False
    head = first.split()
    return not head or "=" in head[0] or head[0].lower() not in trusted


def read_value(value: str, trusted: set[str], auth: AuthResults) -> None:
    """Add one ``Authentication-Results`` value to ``auth``: counted untrusted, or its results taken."""
    parts = strip_comments(value).split(";")
    head = parts[0].strip().split()
    # The authserv-id is the first token and contains no "="; without it
    # (Microsoft-style "spf=fail ..." first) the header cannot be trusted.
    if not head or "=" in head[0] or head[0].lower() not in trusted:
        auth.untrusted_headers += 1
        return
    auth.trusted_headers += 1
    for resinfo in parts[1:]:
        match = _METHOD_RESULT.match(resinfo)
        if not match:
            continue
        method, result = match.group(1).lower(), normalise_result(match.group(2))
        if method not in METHODS:
            continue
        if _RANK[result] > _RANK[auth.results[method]]:
            auth.results[method] = result
        for prop, pattern in _PROPERTIES:
            found = pattern.search(resinfo)
            if found:
                domain = found.group(1).rsplit("@", 1)[-1].strip('"').lower()
                auth.domains.setdefault(f"{method}:{prop}", domain)
