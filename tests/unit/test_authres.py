"""Authentication-Results: trust, comments, quoting, synonyms."""

from __future__ import annotations

import pytest

from mailscore.authres import normalise_result, parse_authentication_results, strip_comments

OURS = ("mx.mailscore.example",)


@pytest.mark.parametrize(
    ("token", "expected"),
    [("pass", "pass"), ("dkim_pass", "pass"), ("success(p=REJECT)", "pass"), ("PASS", "pass"), ("fail", "fail"),
     ("hardfail", "fail"), ("softfail", "softfail"), ("none", "none"), ("temperror", "error"),
     ("bogus", "unknown"), ("", "unknown")],
)
def test_normalise_result(token, expected):
    assert normalise_result(token) == expected


def test_comments_and_quoted_semicolons_do_not_split():
    assert strip_comments('a (x; y (nested)) b "q;r" c') == 'a   b "" c'


def test_only_configured_authserv_ids_count():
    planted = "attacker.example.net; spf=pass; dkim=pass; dmarc=pass"
    ours = "mx.mailscore.example; spf=fail smtp.mailfrom=x.example; dkim=none; dmarc=fail header.from=x.example"
    auth = parse_authentication_results([planted, ours], OURS)
    assert auth.results == {"spf": "fail", "dkim": "none", "dmarc": "fail"}
    assert (auth.trusted_headers, auth.untrusted_headers) == (1, 1)


def test_header_without_authserv_id_is_untrusted():
    auth = parse_authentication_results(["spf=pass smtp.mailfrom=x.example; dkim=pass; dmarc=pass"], ("spf=pass",))
    assert auth.results["spf"] == "unknown"
    assert auth.untrusted_headers == 1


def test_unknown_result_is_never_pass():
    auth = parse_authentication_results(["mx.mailscore.example; dkim=maybe; spf=pass"], OURS)
    assert auth.results["dkim"] == "unknown"
    assert auth.results["spf"] == "pass"


def test_authserv_id_match_is_case_insensitive_and_version_tolerant():
    auth = parse_authentication_results(["MX.MailScore.Example 1; dmarc=pass header.from=corp.example"], OURS)
    assert auth.results["dmarc"] == "pass"
    assert auth.domains["dmarc:header.from"] == "corp.example"


def _reference(values, trusted_ids):
    """The reading without the untrusted shortcut: every value read in full."""
    from mailscore.authres import AuthResults, read_value

    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    auth = AuthResults()
    for value in values:
        read_value(value, trusted, auth)
    return auth


def test_untrusted_shortcut_reads_as_the_full_parse():
    ids = ("mx.ours.example",)
    heads = ["mx.ours.example", "MX.OURS.EXAMPLE", "(note) mx.ours.example", "mx.other.example (mx.ours.example)",
             '"mx.ours.example"', "mx.ours\\.example", "spf=pass", "", "  mx.ours.example  1", "mx.ours.example(x"]
    tails = ["; spf=pass smtp.mailfrom=a.example", '; dkim=fail reason="a;b" (c;d)', ";dmarc=pass", ""]
    for head in heads:
        for tail in tails:
            got, want = parse_authentication_results([head + tail], ids), _reference([head + tail], ids)
            assert (got.results, got.domains, got.trusted_headers, got.untrusted_headers) == (
                want.results, want.domains, want.trusted_headers, want.untrusted_headers), head + tail
