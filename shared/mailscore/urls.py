"""Links in a message: where they point, and whether their visible text agrees.

Hosts are reduced to registrable domains with the Public Suffix List (the
copy bundled with ``publicsuffixlist``, so nothing is fetched at run time).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(re.fullmatch(r"0x[0-9a-f]+|\d{8,10}", host))  # hex/decimal IPv4 forms


def _make_link(url: str) -> Link | None:
    url = url.rstrip(".,;:!?")
    if url.lower().startswith("www."):
        url = "http://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    if not host:
        return None
    return Link(url=url, host=host, domain=registrable_domain(host), is_ip=_is_ip(host))


class _AnchorParser(HTMLParser):
    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.limit = limit
        self.links: list[Link] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._anchor: list[str] = []
        self.forms = 0
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or None
            self._anchor = []
        elif tag == "form":
            self.forms += 1
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            link = _make_link(self._href.strip())
            if link and len(self.links) < self.limit:
                shown = _DOMAINISH.match(" ".join(self._anchor).strip())
                if shown:
                    link.anchor_domain = registrable_domain(shown.group(1))
                self.links.append(link)
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._anchor.append(data)


@dataclass
class HtmlView:
    text: str
    links: list[Link]
    forms: int
    scripts: int


def read_html(html: str, max_urls: int) -> HtmlView:
    """Visible text, anchors (with the domain their text shows) and form/script counts."""
    parser = _AnchorParser(max_urls)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser can raise on pathological markup
        pass
    return HtmlView(" ".join(parser.text), parser.links, parser.forms, parser.scripts)


def extract_links(text: str, html_links: list[Link], max_urls: int) -> LinkSet:
    """Anchors from HTML plus bare URLs in the text, deduplicated, at most ``max_urls``."""
    result = LinkSet()
    seen: set[str] = set()
    for link in html_links:
        if link.url not in seen:
            seen.add(link.url)
            result.links.append(link)
    for match in _URL.finditer(text):
        if len(result.links) >= max_urls:
            result.truncated = True
            break
        link = _make_link(match.group(0))
        if link and link.url not in seen:
            seen.add(link.url)
            result.links.append(link)
    return result
