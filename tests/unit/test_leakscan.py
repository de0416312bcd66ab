"""The leak scanner itself: it must find what it looks for, and only that.

The security tests trust ``tests/leakscan.py`` to find any address or
subject of the inputs in what mailscore writes; these tests plant leaks of
each kind, in each disguise the scanner claims to see through, and check
the matching rules it documents (exact addresses, subjects from 8 chars).
"""

from __future__ import annotations

import json

import leakscan
from emails import make_email

RAW = make_email(
    sender='"Dana Q" <dana.q@sender-one.example>',
    to="Erin <erin@corp.example>, frank@corp.example",
    subject="=?utf-8?q?R=C3=A9sum=C3=A9_for_the_open_position?=",
    reply_to="replies+7@bounce.example.net",
    body="Write to grace@helpdesk.example or see http://x.example/.\n",
    extra="Cc: heidi@corp.example\nSender: ivan@relay.example\nReturn-Path: <judy@bounce.example.net>",
)


def test_collects_every_address_kind_and_the_decoded_subject():
    secrets = leakscan.secrets_of(RAW)
    for address in ("dana.q@sender-one.example", "erin@corp.example", "frank@corp.example", "heidi@corp.example",
                    "replies+7@bounce.example.net", "judy@bounce.example.net", "ivan@relay.example",
                    "grace@helpdesk.example", "bob@corp.example"):  # the last one: Received "for <...>"
        local, _, domain = address.partition("@")
        assert local in secrets.by_domain.get(domain, set()), f"address kind missed: {domain}"
    assert "résumé for the open position" in secrets.subjects


def test_addresses_in_encoded_bodies_are_collected():
    body = "Q29udGFjdCBrYXJsQHBheW1lbnRzLmV4YW1wbGUgdG9kYXku\n"  # base64 of a sentence holding an address
    raw = make_email(body=body, extra="Content-Transfer-Encoding: base64")
    assert "karl" in leakscan.secrets_of(raw).by_domain.get("payments.example", set())


def test_finds_planted_addresses_exactly_and_case_insensitively():
    secrets = leakscan.secrets_of(RAW)
    assert leakscan.find(secrets, "user ERIN@Corp.Example was here") == {"address": 1, "subject": 0}
    assert leakscan.find(secrets, '{"to": "x=frank@corp.example"}')["address"] == 1
    assert leakscan.find(secrets, "frank@corp.example.net and erin@corp.examples")["address"] == 0
    assert leakscan.find(secrets, "corp.example and frank and @corp.example")["address"] == 0


def test_finds_subjects_also_when_json_escaped_or_refolded():
    secrets = leakscan.secrets_of(RAW)
    escaped = json.dumps({"message": "Résumé  for the\n open POSITION"})  # ensure_ascii: \u00e9
    assert "sum" in escaped and "\\u00e9" in escaped
    assert leakscan.find(secrets, escaped)["subject"] == 1
    assert leakscan.find(secrets, "a resume for the open position")["subject"] == 0


def test_short_subjects_are_not_searched():
    secrets = leakscan.secrets_of(make_email(subject="  Hi  "))
    assert secrets.short_subjects == 1 and not secrets.subjects
    assert leakscan.find(secrets, '{"Hi": "hi"}')["subject"] == 0
    assert leakscan.MIN_SUBJECT_CHARS == 8


def test_hostile_bytes_do_not_break_collection():
    for raw in (b"", b"\xff\xfe\x00garbage@", b"From: =?bogus-charset?q?x=40y?= <a@b.example>\n\n", b"Subject: =?utf-8?b?###?=\n\n"):
        leakscan.secrets_of(raw)
    assert "a" in leakscan.secrets_of(b"From: =?bogus-charset?q?x?= <a@b.example>\n\n").by_domain["b.example"]


def test_findings_name_place_and_kind_but_never_the_text():
    secrets = leakscan.secrets_of(RAW)
    lines = leakscan.describe("logs/function.log", leakscan.find(secrets, "dana.q@sender-one.example résumé for the open position"))
    assert lines == ["logs/function.log: 1 input addresses found", "logs/function.log: 1 input subjects found"]
    assert not any("dana" in line or "sum" in line for line in lines)


def test_metric_label_fields_must_be_codes():
    good = json.dumps({"message": "scored", "label": "safe", "model_version": "xgb-0123456789ab"})
    bad = json.dumps({"message": "dead-lettered", "reason": "Subject: hello there", "label": "safe"})
    assert leakscan.metric_label_violations("f", good + "\nnot json\n") == []
    assert leakscan.metric_label_violations("f", bad) == ["f:1: field 'reason' is not a code"]


def test_secrets_repr_shows_counts_only():
    text = repr(leakscan.secrets_of(RAW))
    assert "@" not in text and "corp" not in text and "position" not in text
    assert "addresses" in text
