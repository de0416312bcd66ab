"""Links in a message: where they point, and whether their visible text agrees.

Hosts are reduced to registrable domains with the Public Suffix List (the
copy bundled with ``publicsuffixlist``, so nothing is fetched at run time).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from html import unescape
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from mailscore.twins import twin

_PSL = PublicSuffixList()
_URL = re.compile(r"""(?i)\b(?:https?://|www\.)[^\s<>"'()\[\]{}]{1,2000}""")
_DOMAINISH = re.compile(r"(?i)^(?:https?://)?(?:www\.)?([a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+)(?:[/:?#]\S*)?$")
SHORTENERS = frozenset(
    {
        "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly",
        "rebrand.ly", "cutt.ly", "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "s.id",
    }
)


@dataclass
class Link:
    url: str
    host: str
    domain: str  # registrable domain, or the IP literal
    is_ip: bool
    anchor_domain: str | None = None  # domain shown in the anchor text, if any


@dataclass
class LinkSet:
    links: list[Link] = field(default_factory=list)
    truncated: bool = False

    @property
    def domains(self) -> set[str]:
        return {link.domain for link in self.links if link.domain}


@lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    """``mail.bank.example.co.uk`` -> ``example.co.uk``; IPs and junk come back as given."""
    host = host.strip(".").lower()
    if not host:
        return ""
    if _is_ip(host):
        return host
    try:
        return _PSL.privatesuffix(host) or host
    except Exception:  # noqa: BLE001 - malformed labels
        return host


_NON_ADDRESS_CHAR = re.compile(r"[^0-9a-fx:.\[\]]")


@lru_cache(maxsize=65536)
def _is_ip(host: str) -> bool:
    lowered = host.lower()
    if "%" not in lowered and _NON_ADDRESS_CHAR.search(lowered):
        return False  # a character no address form has (most hosts: a TLD letter past f)
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(re.fullmatch(r"0x[0-9a-f]+|\d{8,10}", host))  # hex/decimal IPv4 forms


def _make_link(url: str) -> Link | None:
    target = _link_target(url)
    return Link(*target) if target is not None else None


@lru_cache(maxsize=4096)
def _link_target(url: str) -> tuple[str, str, str, bool] | None:
    """(url, host, domain, is_ip) of a link, or None: newsletters repeat their links."""
    url = url.rstrip(".,;:!?")
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        host = _hostname(url)
    except ValueError:
        return None
    if not host:
        return None
    return url, host, registrable_domain(host), _is_ip(host)


# The netloc of an http(s) URL, as urlsplit finds it: up to the first "/", "?" or "#".
_HTTP_NETLOC = re.compile(r"(?i)https?://([^/?#]*)")


def _hostname(url: str) -> str:
    """``urlsplit(url).hostname or ""``, without urlsplit for the common case.

    A plain ``http(s)://`` URL whose netloc is ASCII without brackets, and
    with no tab or line break anywhere (urlsplit deletes those first), has
    the host urlsplit would give computed the way its ``hostname`` does it;
    anything else goes through urlsplit itself (which may raise ValueError).
    """
    match = _HTTP_NETLOC.match(url)
    if match is not None and "\t" not in url and "\r" not in url and "\n" not in url:
        netloc = match.group(1)
        if netloc.isascii() and "[" not in netloc and "]" not in netloc:
            host = netloc.rpartition("@")[2].partition(":")[0]
            if "%" in host:
                host, percent, zone = host.partition("%")
                return host.lower() + percent + zone
            return host.lower()
    return urlsplit(url).hostname or ""


@dataclass
class HtmlView:
    text: str
    links: list[Link]
    forms: int
    scripts: int


# The HTML reader is a handful of bounded regex scans, not a tokenizer: the
# features need the visible text (for its length and its terms), the anchors
# with the domain their text shows, and how many forms and scripts there are.
# Every scan moves forward, so hostile markup (unclosed comments, thousands of
# opening tags) costs time linear in its length.
_COMMENT_OPEN = "<!--"
_COMMENT_CLOSE = "-->"
_HIDDEN_OPEN = re.compile(r"(?i)<(script|style)\b")
_HIDDEN_CLOSE = {"script": re.compile(r"(?i)</script\s*>"), "style": re.compile(r"(?i)</style\s*>")}
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,4096}>|<![^<>]{0,4096}>|<\?[^<>]{0,4096}>")
_ANCHOR = re.compile(r"(?i)<a\s[^<>]{0,4096}>")
_ANCHOR_CLOSE = re.compile(r"(?i)</a\s*>|<a\s")
_HREF = re.compile(r"""(?i)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_FORM_OR_SCRIPT = re.compile(r"(?i)<(form|script)\b")
_ANCHOR_TEXT_CHARS = 4096


def _strip_tags(text: str) -> str:
    """Each tag (or ``<!...>``, ``<?...>``) replaced by a space; ``_native.strip_tags`` is the compiled twin."""
    return _TAG.sub(" ", text)


def read_html(html: str, max_urls: int) -> HtmlView:
    """Visible text, anchors (with the domain their text shows) and form/script counts."""
    visible = unescape_html(strip_tags(without_hidden(html)))
    forms, scripts = count_forms_scripts(html)
    return HtmlView(visible, _anchors(html, max_urls), forms, scripts)


def _count_forms_scripts(html: str) -> tuple[int, int]:
    """How many "<form" and "<script" tags; ``_native.count_forms_scripts`` is the compiled twin."""
    # One scan for both: a match is "<form" or "<script" (any case) at a word end.
    opened = _FORM_OR_SCRIPT.findall(html)
    forms = sum(1 for name in opened if name[0] in "fF")
    return forms, len(opened) - forms


# The character references most HTML mail uses, "&amp;" last: replacing them in
# this order is what html.unescape does when they are the only references present.
_COMMON_REFERENCES = (("&nbsp;", "\xa0"), ("&gt;", ">"), ("&lt;", "<"), ("&quot;", '"'), ("&#39;", "'"),
                      ("&amp;", "&"))


def unescape_html(text: str) -> str:
    """``html.unescape(text)``, with the common references replaced without it when they are all there is.

    Each reference holds one "&": when every "&" starts one of them, replacing
    them gives html.unescape's result (what they become is neither a letter, a
    digit, ";" nor "&", so no reference can start or end differently). A test
    holds this to html.unescape on generated strings.
    """
    if "&" not in text:
        return text
    replaced = replace_common_references(text)
    return unescape(text) if replaced is None else replaced


def _replace_common_references(text: str) -> str | None:
    """``text`` with the common references replaced, or None when some "&" starts none of them.

    ``_native.replace_common_references`` is the compiled twin.
    """
    amps = text.count("&")
    if text.count("&amp;") == amps:  # the usual case in a link: only escaped "&"
        return text.replace("&amp;", "&")
    counts = [text.count(ref) for ref, _ in _COMMON_REFERENCES]
    if sum(counts) != amps:
        return None
    for (ref, char), count in zip(_COMMON_REFERENCES, counts):
        if count:
            text = text.replace(ref, char)
    return text


def _without_hidden(html: str) -> str:
    """``html`` less comments and script/style contents (an unclosed one hides the rest).

    ``_native.without_hidden`` is the compiled twin.
    """
    if _COMMENT_OPEN not in html and "<s" not in html and "<S" not in html:
        return html
    kept: list[str] = []
    pos = 0
    comment = html.find(_COMMENT_OPEN)
    hidden = _HIDDEN_OPEN.search(html)
    while comment >= 0 or hidden is not None:
        # Searches are redone only once the cursor has passed their result: linear overall.
        if comment >= 0 and (hidden is None or comment < hidden.start()):
            kept.append(html[pos:comment])
            end = html.find(_COMMENT_CLOSE, comment + 4)
            pos = end + 3 if end >= 0 else len(html)
        else:
            kept.append(html[pos:hidden.start()])
            # By its last letter: (?i) also matches "\u017fcript" (long s), which .lower() keeps as it is.
            kind = "script" if hidden.group(1)[-1] in "tT" else "style"
            close = _HIDDEN_CLOSE[kind].search(html, hidden.end())
            pos = close.end() if close else len(html)
        if 0 <= comment < pos:
            comment = html.find(_COMMENT_OPEN, pos)
        if hidden is not None and hidden.start() < pos:
            hidden = _HIDDEN_OPEN.search(html, pos)
    kept.append(html[pos:])
    return " ".join(kept)


def _anchors(html: str, limit: int) -> list[Link]:
    links: list[Link] = []
    for tag in _ANCHOR.finditer(html):
        if len(links) >= limit:
            break
        href = _HREF.search(tag.group(0))
        if href is None:
            continue
        url = href.group(href.lastindex)  # the quoted or bare value, whichever matched
        target = _link_target((unescape_html(url) if "&" in url else url).strip())
        if target is None:
            continue
        link = Link(*target)
        end = tag.end()
        close = _ANCHOR_CLOSE.search(html, end, end + _ANCHOR_TEXT_CHARS)
        shown_text = html[end : close.start() if close else end + _ANCHOR_TEXT_CHARS]
        if "<" in shown_text:
            shown_text = strip_tags(shown_text)
        shown = _DOMAINISH.match((unescape_html(shown_text) if "&" in shown_text else shown_text).strip())
        if shown:
            link.anchor_domain = registrable_domain(shown.group(1))
        links.append(link)
    return links


def extract_links(text: str, html_links: list[Link], max_urls: int) -> LinkSet:
    """Anchors from HTML plus bare URLs in the text, deduplicated, at most ``max_urls``."""
    result = LinkSet()
    seen: set[str] = set()
    for link in html_links:
        if link.url not in seen:
            seen.add(link.url)
            result.links.append(link)
    for url in bare_urls(text):
        if len(result.links) >= max_urls:
            result.truncated = True
            break
        link = _make_link(url)
        if link and link.url not in seen:
            seen.add(link.url)
            result.links.append(link)
    return result


def bare_urls(text: str) -> Iterator[str]:
    """What ``_URL.finditer`` finds, found faster.

    A match can only start where the lower-cased text has ``http`` or
    ``www.``, and two plain substring searches find those places far faster
    than trying a case-insensitive pattern at every position; the pattern is
    then matched only there. When lower-casing changes the length (a few
    non-ASCII letters do), the positions would not line up: plain finditer.
    """
    lowered = text.lower()
    if len(lowered) != len(text):
        yield from (m.group(0) for m in _URL.finditer(text))
        return
    starts = _positions(lowered, "http") + _positions(lowered, "www.")
    starts.sort()
    end = 0
    for start in starts:
        if start < end:
            continue  # inside the previous match, as finditer would skip it
        match = _URL.match(text, start)
        if match:
            end = match.end()
            yield match.group(0)


def _positions(text: str, needle: str) -> list[int]:
    found = []
    index = text.find(needle)
    while index >= 0:
        found.append(index)
        index = text.find(needle, index + 1)
    return found


strip_tags = twin("strip_tags", _strip_tags)
without_hidden = twin("without_hidden", _without_hidden)
count_forms_scripts = twin("count_forms_scripts", _count_forms_scripts)
replace_common_references = twin("replace_common_references", _replace_common_references)
