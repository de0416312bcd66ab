"""From a parsed email (plus sender history) to one fixed-length feature vector.

``FEATURE_NAMES`` is the schema: the model card stores it with
``SCHEMA_VERSION`` and the scorer refuses a model built for another one.
Every feature is a number computed from headers, structure, links,
attachments or history; none carries text from the message. Missing values
(history when Bigtable is unavailable, a date that cannot be read) are NaN,
which XGBoost routes down each split's learned default branch.
"""

from __future__ import annotations

import calendar
import email.utils
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import re2

from mailscore.authres import parse_authentication_results
from mailscore.parse import ParsedEmail
from mailscore.settings import ParseLimits
from mailscore.urls import SHORTENERS, extract_links, read_html, registrable_domain

SCHEMA_VERSION = "2026-12-04.3"  # .2: HTML text by bounded scans; .3: list-software anomalies not counted

_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
_ADDR_SPEC = re.compile(r"^\s*([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64})@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)\s*$")
_DOMAIN_IN_TEXT = re.compile(r"(?i)\b([a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*\.[a-z]{2,24})\b")
# Leading "[tag]" blocks, optionally after reply prefixes, that list software adds to subjects.
_LIST_TAG = re.compile(r"^((?:\s*(?:re|fwd?|aw|sv)\s*:)*)\s*(?:\[[^\[\]]{1,60}\]\s*)+", re.I)
_MSGID = re.compile(r"^\s*<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+|\[[^\[\]\\\s]*\])>\s*$")
# The term lists, as the regular expressions they were first written as. Counting
# them with Python's ``re`` cost more than half a millisecond per message (three
# case-insensitive alternations tried at every position); one RE2 automaton over
# the UTF-8 bytes finds every candidate in one pass, and a candidate next to a
# non-ASCII byte gets Python's Unicode word-boundary check, so the counts equal
# ``len(re.findall(...))`` with these patterns and re.IGNORECASE (except that
# Python also folds U+017F and U+212A onto "s" and "k"; RE2 on bytes does not).
_TERM_PATTERNS = {
    "urgency_terms": (
        r"urgent|urgently|immediately|asap|suspend(?:ed)?|locked|unusual|expire[sd]?|"
        r"final notice|action required|within 24 hours|deadline|restricted|limited time"
    ),
    "credential_terms": (
        r"password|passcode|log ?in|sign ?in|verify your|confirm your|credentials?|"
        r"account (?:verification|update)|security (?:alert|check)|validate|mailbox quota"
    ),
    "money_terms": (
        r"invoice|payment|wire|bank transfer|gift ?cards?|bitcoin|refund|overdue|"
        r"remittance|beneficiary|payroll|tax"
    ),
}
_TERMS = re2.compile(
    "(?i)\\b(?:" + "|".join(f"(?P<{name}>{alt})" for name, alt in _TERM_PATTERNS.items()) + ")\\b"
)
_RISKY_EXT = frozenset(
    {"exe", "scr", "js", "jse", "vbs", "vbe", "bat", "cmd", "com", "pif", "hta", "jar",
     "iso", "img", "lnk", "wsf", "ps1", "msi", "html", "htm", "shtml", "svg", "xll"}
)
_MACRO_EXT = frozenset({"docm", "xlsm", "pptm", "dotm", "xlam", "xlsb"})
_FREEMAIL = frozenset(
    {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
     "aol.com", "icloud.com", "mail.ru", "gmx.com", "gmx.net", "yandex.ru", "proton.me",
     "protonmail.com", "zoho.com"}
)
_HEADER_DEFECTS = frozenset(
    {"header_line_invalid", "header_continuation_without_field", "header_value_truncated",
     "headers_truncated", "header_block_truncated", "header_8bit_invalid", "encoded_word_invalid"}
)
_STRUCTURE_DEFECTS = frozenset(
    {"mime_defect", "mime_parts_truncated", "mime_depth_exceeded", "body_decode_fallback",
     "header_param_stuffing", "mime_version_missing"}
)

FEATURE_NAMES: tuple[str, ...] = (
    # identity and alignment
    "from_missing", "from_ambiguous", "from_candidate_domains", "display_name_has_address",
    "display_name_domain_mismatch", "reply_to_domain_mismatch", "return_path_domain_mismatch",
    "sender_freemail", "sender_domain_digits", "sender_domain_punycode",
    "msgid_missing", "msgid_malformed", "msgid_domain_mismatch",
    "date_invalid", "date_skew_hours",
    # authentication (trusted Authentication-Results only)
    "auth_results_trusted", "spf_pass", "spf_fail", "dkim_pass", "dkim_fail", "dmarc_pass", "dmarc_fail",
    # structure and defects
    "header_defects", "header_crlf_injection", "charset_invalid", "multipart_boundary_missing",
    "structure_defects", "mime_parts",
    # content (counts only)
    "subject_length", "subject_upper_ratio", "body_length_log", "html_only", "html_forms", "html_scripts",
    "urgency_terms", "credential_terms", "money_terms",
    # links
    "url_count", "url_domains", "url_ip_literal", "url_shortener", "url_punycode",
    "url_anchor_mismatch", "url_plain_http_share", "url_foreign_domain_share", "url_max_length",
    # attachments
    "attachment_count", "attachment_risky", "attachment_macro", "attachment_double_extension",
    # sender history (NaN when it could not be read)
    "sender_known", "sender_msg_count_log", "sender_days_known", "sender_flagged_share",
    "sender_recipients_log",
)
FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
HISTORY_FEATURES = FEATURE_NAMES[-5:]


@dataclass(frozen=True)
class Sender:
    """Who the message claims to be from, as far as the From header can say."""

    address: str | None  # lower-cased addr-spec used for history, None if unusable
    domain: str | None  # registrable domain of ``address``
    ambiguous: bool
    candidate_domains: frozenset[str]
    display_name: str


@dataclass(frozen=True)
class History:
    """What the profile store knows about a sender, at the time of the message."""

    msg_count: int = 0
    first_seen: float | None = None  # epoch seconds
    flagged_count: int = 0
    recipients: int = 0


def parse_sender(value: str | None) -> Sender:
    """Read ``From`` without trusting it: every candidate is recorded (case 04).

    The sender used for history and alignment is the single angle-bracket
    address when there is exactly one, else a bare addr-spec; anything else
    leaves the sender unknown and the header flagged ambiguous. Most mail
    comes from senders seen before, so usual-length values are cached (a
    ``Sender`` is immutable).
    """
    if value is not None and len(value) > 256:
        return _parse_sender(value)
    return _parse_sender_cached(value)


def _parse_sender(value: str | None) -> Sender:
    if not value or not value.strip():
        return Sender(None, None, True, frozenset(), "")
    candidates = frozenset(registrable_domain(m.group(1)) for m in _ADDR.finditer(value))
    angles = re.findall(r"<([^<>]*)>", value)
    address = None
    display = value
    if len(angles) == 1:
        spec = _ADDR_SPEC.match(angles[0])
        if spec:
            address = f"{spec.group(1)}@{spec.group(2)}".lower()
        display = value[: value.find("<")]
    elif not angles:
        spec = _ADDR_SPEC.match(re.sub(r"\([^()]*\)", " ", value))
        if spec:
            address = f"{spec.group(1)}@{spec.group(2)}".lower()
            display = ""
    display_unquoted = re.sub(r'"[^"]*"', "", display)
    ambiguous = (
        address is None
        or len(angles) > 1
        or "@" in display_unquoted
        or display_unquoted.count("(") != display_unquoted.count(")")
        or "<" in display_unquoted or ">" in display_unquoted
    )
    domain = registrable_domain(address.rsplit("@", 1)[1]) if address else None
    return Sender(address, domain, ambiguous, candidates, display.strip().strip('"').strip())


_parse_sender_cached = lru_cache(maxsize=8192)(_parse_sender)


def _address_domain(value: str | None) -> str | None:
    if not value:
        return None
    found = _ADDR.search(value)
    return registrable_domain(found.group(1)) if found else None


def list_domains(msg: ParsedEmail | _FirstHeaders) -> frozenset[str]:
    """Registrable domains of the mailing list that relayed ``msg`` (List-Id, List-Post), if any.

    List software legitimately rewrites Reply-To, Return-Path and the From of
    DMARC-strict senders to the list's own addresses, and tags the subject.
    """
    found: set[str] = set()
    for header in ("list-id", "list-post"):
        value = msg.get(header)
        if value:
            found.update(registrable_domain(d) for d in _DOMAIN_IN_TEXT.findall(value[:512])[:3])
    return frozenset(found)


# The usual RFC 5322 date ("Tue, 3 Dec 2026 10:11:12 +0000", anything after a
# blank ignored as parsedate_tz ignores it); ASCII only, explicit numeric zone.
_PLAIN_DATE = re.compile(
    r"(?ai)[ \t]*(?:(?:mon|tue|wed|thu|fri|sat|sun),[ \t]*)?([0-9]{1,2})[ \t]+"
    r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[ \t]+([0-9]{4})[ \t]+"
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})[ \t]+([+-])([0-9]{4})(?:[ \t]|$)"
)
_MONTHS = {name: i for i, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun",
                                             "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}


def _parse_date(value: str | None) -> float | None:
    if not value:
        return None
    plain = _PLAIN_DATE.match(value)
    if plain is not None and (plain.group(7) == "+" or plain.group(8) != "0000"):
        # What parsedate_tz and mktime_tz compute for this form, without their token juggling
        # ("-0000", which means local time to them, is left to them).
        dd, mon, yy, hh, mi, ss, sign, zone = plain.groups()
        year = int(yy)
        if year < 100:
            year += 1900 if year > 68 else 2000
        offset = int(zone)
        offset = (offset // 100) * 3600 + (offset % 100) * 60
        try:
            stamp = calendar.timegm((year, _MONTHS[mon.lower()], int(dd), int(hh), int(mi), int(ss), 0, 1, -1))
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        return float(stamp - offset if sign == "+" else stamp + offset)
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def received_time(msg: ParsedEmail | _FirstHeaders) -> float | None:
    """The timestamp of the top (newest) Received header, if it has a readable one."""
    received = msg.get("received")
    if received and ";" in received:
        return _parse_date(received.rsplit(";", 1)[1])
    return None


def message_time(msg: ParsedEmail) -> float | None:
    """When the message arrived: the top Received timestamp, else its Date."""
    stamp = received_time(msg)
    return stamp if stamp is not None else _parse_date(msg.get("date"))


def count_terms(text: str) -> dict[str, float]:
    """How often each term list occurs in ``text``, as whole words, ignoring case."""
    counts = dict.fromkeys(_TERM_PATTERNS, 0.0)
    data = text.encode("utf-8", "replace")
    for match in _TERMS.finditer(data):
        start, end = match.span()
        # RE2's \\b only knows ASCII: next to a non-ASCII character, ask Python.
        if (start and data[start - 1] >= 0x80 and _is_word(_char_before(data, start))) or (
            end < len(data) and data[end] >= 0x80 and _is_word(_char_at(data, end))
        ):
            continue
        counts[match.lastgroup] += 1.0
    return counts


def _char_before(data: bytes, index: int) -> str:
    start = index - 1
    while start > 0 and index - start < 4 and 0x80 <= data[start] < 0xC0:
        start -= 1
    return data[start:index].decode("utf-8", "replace")[-1:]


def _char_at(data: bytes, index: int) -> str:
    return data[index : index + 4].decode("utf-8", "replace")[:1]


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


class _FirstHeaders:
    """``ParsedEmail.get`` for every header, from one pass over the headers (names are lower-case)."""

    __slots__ = ("first", "auth_results")

    def __init__(self, msg: ParsedEmail) -> None:
        self.first = msg.first_values()
        self.auth_results = [value for name, value in msg.headers if name == "authentication-results"]

    def get(self, name: str) -> str | None:
        return self.first.get(name)


def extract(
    msg: ParsedEmail,
    history: History | None,
    *,
    trusted_authserv_ids: tuple[str, ...],
    limits: ParseLimits | None = None,
    now: float | None = None,
    sender: Sender | None = None,
) -> np.ndarray:
    """The feature vector of ``msg``; ``history=None`` means history is unavailable.

    ``sender`` is ``parse_sender(msg.get("from"))`` when the caller has it already.
    """
    limits = limits or ParseLimits()
    f = dict.fromkeys(FEATURE_NAMES, 0.0)
    headers = _FirstHeaders(msg)
    if sender is None:
        sender = parse_sender(headers.get("from"))
    f["from_missing"] = _flag(headers.get("from") is None)
    f["from_ambiguous"] = _flag(sender.ambiguous)
    f["from_candidate_domains"] = float(len(sender.candidate_domains))
    f["display_name_has_address"] = _flag("@" in sender.display_name)
    shown = {registrable_domain(d) for d in _DOMAIN_IN_TEXT.findall(sender.display_name)}
    f["display_name_domain_mismatch"] = _flag(bool(shown) and sender.domain not in shown)
    lists = list_domains(headers)
    for feature, header in (("reply_to_domain_mismatch", "reply-to"), ("return_path_domain_mismatch", "return-path")):
        other = _address_domain(headers.get(header))
        # Pointing at (or coming from) the relaying list is what list software does, not a mismatch.
        f[feature] = _flag(other is not None and sender.domain is not None and other != sender.domain
                           and not (lists and (other in lists or sender.domain in lists)))
    if sender.domain:
        f["sender_freemail"] = _flag(sender.domain in _FREEMAIL)
        f["sender_domain_digits"] = _flag(any(ch.isdigit() for ch in sender.domain))
        f["sender_domain_punycode"] = _flag("xn--" in sender.domain)

    msgid = headers.get("message-id")
    f["msgid_missing"] = _flag(msgid is None)
    if msgid is not None:
        f["msgid_malformed"] = _flag(not _MSGID.match(msgid))
        id_domain = msgid.rsplit("@", 1)[-1].strip(" <>[]") if "@" in msgid else ""
        f["msgid_domain_mismatch"] = _flag(
            bool(id_domain) and sender.domain is not None and registrable_domain(id_domain) != sender.domain
        )

    date = _parse_date(headers.get("date"))
    f["date_invalid"] = _flag(date is None)
    received = received_time(headers)
    arrived = received if received is not None else date
    f["date_skew_hours"] = abs(received - date) / 3600.0 if (date is not None and received is not None) else math.nan

    auth = parse_authentication_results(headers.auth_results, trusted_authserv_ids)
    f["auth_results_trusted"] = _flag(auth.trusted_headers > 0)
    for method in ("spf", "dkim", "dmarc"):
        f[f"{method}_pass"] = _flag(auth.results[method] == "pass")
        f[f"{method}_fail"] = _flag(auth.results[method] in ("fail", "softfail"))

    f["header_defects"] = float(len(msg.defects & _HEADER_DEFECTS))
    f["header_crlf_injection"] = _flag("header_crlf_injection" in msg.defects)
    f["charset_invalid"] = _flag("charset_invalid" in msg.defects)
    f["multipart_boundary_missing"] = _flag("multipart_boundary_missing" in msg.defects)
    f["structure_defects"] = float(len(msg.defects & _STRUCTURE_DEFECTS))
    f["mime_parts"] = float(msg.mime_parts)

    subject = headers.get("subject") or ""
    shown_subject = _LIST_TAG.sub(r"\1 ", subject).strip() if lists else subject  # without the list's [tag]
    letters = [ch for ch in shown_subject if ch.isalpha()]
    f["subject_length"] = float(len(shown_subject))
    f["subject_upper_ratio"] = sum(ch.isupper() for ch in letters) / len(letters) if letters else 0.0
    html = read_html(msg.html, limits.max_urls) if msg.html else None
    body_text = msg.text + ("\n" + html.text if html else "")
    f["body_length_log"] = math.log1p(len(body_text))
    f["html_only"] = _flag(bool(msg.html) and not msg.text.strip())
    f["html_forms"] = float(html.forms) if html else 0.0
    f["html_scripts"] = float(html.scripts) if html else 0.0
    scan = subject + "\n" + body_text[: limits.max_body_scan_bytes]
    f.update(count_terms(scan))

    links = extract_links(msg.text, html.links if html else [], limits.max_urls)
    if lists:  # the list's own footer and archive links say nothing about the sender
        links.links = [link for link in links.links if link.domain not in lists]
    n = len(links.links)
    f["url_count"] = float(n)
    f["url_domains"] = float(len(links.domains))
    if n:
        ip = shortener = punycode = mismatch = plain = foreign = longest = 0
        for link in links.links:
            ip += link.is_ip
            shortener += link.domain in SHORTENERS
            punycode += "xn--" in link.host
            mismatch += bool(link.anchor_domain) and link.anchor_domain != link.domain
            plain += link.url[:5].lower() == "http:"
            foreign += link.domain != sender.domain
            longest = max(longest, len(link.url))
        f["url_ip_literal"] = float(ip)
        f["url_shortener"] = float(shortener)
        f["url_punycode"] = float(punycode)
        f["url_anchor_mismatch"] = float(mismatch)
        f["url_plain_http_share"] = plain / n
        if sender.domain:
            f["url_foreign_domain_share"] = foreign / n
        f["url_max_length"] = float(longest)

    f["attachment_count"] = float(len(msg.attachments))
    for att in msg.attachments:
        parts = att.filename.lower().rsplit(".", 2)
        ext = parts[-1] if len(parts) > 1 else ""
        f["attachment_risky"] += _flag(ext in _RISKY_EXT or att.content_type in ("application/x-msdownload", "text/html"))
        f["attachment_macro"] += _flag(ext in _MACRO_EXT)
        f["attachment_double_extension"] += _flag(len(parts) == 3 and len(parts[1]) <= 4 and ext in _RISKY_EXT)

    if history is None:
        for name in HISTORY_FEATURES:
            f[name] = math.nan
    else:
        when = now if now is not None else (arrived if arrived is not None else datetime.now(timezone.utc).timestamp())
        f["sender_known"] = _flag(history.msg_count > 0)
        f["sender_msg_count_log"] = math.log1p(history.msg_count)
        f["sender_days_known"] = (
            max(0.0, (when - history.first_seen) / 86400.0) if history.first_seen is not None else math.nan
        )
        f["sender_flagged_share"] = history.flagged_count / history.msg_count if history.msg_count else math.nan
        f["sender_recipients_log"] = math.log1p(history.recipients)
    if len(f) == len(FEATURE_NAMES):  # only schema keys were set: the dict is in schema order
        return np.array(list(f.values()), dtype=np.float32)
    return np.fromiter((f[name] for name in FEATURE_NAMES), dtype=np.float32, count=len(FEATURE_NAMES))
