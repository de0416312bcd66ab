"""Feature extraction on our own fixtures: each feature moves when its signal does."""

from __future__ import annotations

import math

import pytest

from emails import PHISH, make_email
from mailscore.features import FEATURE_INDEX, FEATURE_NAMES, History, extract
from mailscore.parse import parse_email
from mailscore.urls import extract_links, read_html, registrable_domain

OURS = ("mx.mailscore.example",)


def feats(raw: bytes, history: History | None = None) -> dict[str, float]:
    vector = extract(parse_email(raw), history, trusted_authserv_ids=OURS, now=1772532902.0)
    assert vector.dtype.name == "float32" and vector.shape == (len(FEATURE_NAMES),)
    return {name: float(vector[i]) for name, i in FEATURE_INDEX.items()}


def test_clean_internal_mail_has_no_alarm_features():
    f = feats(make_email())
    for name in ("from_ambiguous", "reply_to_domain_mismatch", "msgid_malformed", "msgid_domain_mismatch",
                 "spf_fail", "dkim_fail", "dmarc_fail", "url_ip_literal", "url_anchor_mismatch", "html_forms"):
        assert f[name] == 0.0, name
    assert (f["spf_pass"], f["dkim_pass"], f["dmarc_pass"]) == (1.0, 1.0, 1.0)
    assert f["date_skew_hours"] == pytest.approx(2 / 3600)


def test_phishing_fixture_trips_what_it_was_built_to():
    f = feats(PHISH)
    assert f["reply_to_domain_mismatch"] == 1.0
    assert f["msgid_domain_mismatch"] == 1.0
    assert (f["spf_fail"], f["dmarc_fail"], f["dkim_pass"]) == (1.0, 1.0, 0.0)
    assert f["url_ip_literal"] == 1.0
    assert f["url_anchor_mismatch"] == 1.0
    assert f["html_forms"] == 1.0 and f["html_only"] == 1.0
    assert f["urgency_terms"] >= 3 and f["credential_terms"] >= 2
    assert f["display_name_domain_mismatch"] == 0.0


def test_history_features():
    unknown = feats(make_email(), None)
    assert all(math.isnan(unknown[n]) for n in ("sender_known", "sender_msg_count_log", "sender_days_known"))
    new = feats(make_email(), History())
    assert new["sender_known"] == 0.0 and new["sender_msg_count_log"] == 0.0
    known = feats(make_email(), History(msg_count=9, first_seen=1772532902.0 - 10 * 86400, flagged_count=3, recipients=4))
    assert known["sender_known"] == 1.0
    assert known["sender_days_known"] == 10.0
    assert abs(known["sender_flagged_share"] - 1 / 3) < 1e-6
    assert abs(known["sender_msg_count_log"] - math.log1p(9)) < 1e-6


def test_attachment_features():
    body = (
        "--b\nContent-Type: text/plain\n\nplease review\n"
        '--b\nContent-Type: application/octet-stream; name="scan.pdf.exe"\nContent-Disposition: attachment; filename="scan.pdf.exe"\n\nMZ\n'
        '--b\nContent-Type: application/vnd.ms-word.document.macroEnabled.12\nContent-Disposition: attachment; filename="terms.docm"\n\nPK\n--b--\n'
    )
    f = feats(make_email(content_type='multipart/mixed; boundary="b"', body=body))
    assert f["attachment_count"] == 2.0
    assert f["attachment_risky"] == 1.0
    assert f["attachment_double_extension"] == 1.0
    assert f["attachment_macro"] == 1.0


def test_links_anchor_text_and_shorteners():
    html = ('<a href="https://bit.ly/3abc">https://bank.example/login</a>'
            '<a href="https://news.example.org/a">Read more</a>'
            '<a href="http://xn--bnk-6cd.example/">bank.example</a>')
    view = read_html(html, 10)
    links = extract_links("also see www.news.example.org/b.", view.links, 10)
    assert [link.domain for link in links.links] == ["bit.ly", "example.org", "xn--bnk-6cd.example", "example.org"]
    assert [link.anchor_domain for link in links.links[:3]] == ["bank.example", None, "bank.example"]
    f = feats(make_email(content_type="text/html", body=html))
    assert f["url_shortener"] == 1.0 and f["url_punycode"] == 1.0 and f["url_anchor_mismatch"] == 2.0


def test_url_limit():
    text = " ".join(f"https://h{i}.example.com/" for i in range(500))
    links = extract_links(text, [], 256)
    assert len(links.links) == 256 and links.truncated


def test_registrable_domain():
    assert registrable_domain("Mail.Bank.Example.co.uk") == "example.co.uk"
    assert registrable_domain("203.0.113.7") == "203.0.113.7"
    assert registrable_domain("a.b.corp.example") == "corp.example"


def test_display_name_brand_mismatch():
    f = feats(make_email(sender='"paypal.example.com Security" <x@mailer.example.net>'))
    assert f["display_name_domain_mismatch"] == 1.0
    f = feats(make_email(sender='"corp.example IT" <it@corp.example>'))
    assert f["display_name_domain_mismatch"] == 0.0


def test_html_long_s_script_tag_does_not_crash():
    """(?i) matches "<\u017fcript" (long s) as a script opening: it used to raise KeyError."""
    from mailscore.urls import read_html

    view = read_html("<p>a</p><span>b</span><\u017fcript>hidden</script><form>c", 10)
    assert (view.forms, view.scripts) == (1, 1)
    assert "hidden" not in view.text and "c" in view.text
