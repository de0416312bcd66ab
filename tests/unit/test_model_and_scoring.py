"""Model card verification, thresholds, reasons, AUC, and the training data contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emails import PHISH, make_email
from mailscore.errors import InvalidMessage, ModelError
from mailscore.features import FEATURE_NAMES, History
from mailscore.model import auc, load_model, precision_recall
from mailscore.scoring import Scorer, reason_code
from mailscore.training import label_of
from pathlib import Path

from mailscore.history import HistorySource
from mailscore.profiles import Snapshot

EMPTY_HISTORY = HistorySource(lambda key, budget: Snapshot(History(), None))


def test_card_records_schema_hash_and_holdout(model_dir, model):
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["feature_names"] == list(FEATURE_NAMES)
    assert model.version == card["model_version"] == "xgb-" + card["sha256"][:12]
    assert card["training_data"]["phishing"] > 20 and card["training_data"]["legitimate"] > 20
    assert 0.5 < card["holdout"]["auc"] <= 1.0


def test_schema_mismatch_is_refused(model_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    card["schema_version"] = "1999-01-01.0"
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="feature schema"):
        load_model(copy)


def test_tampered_model_is_refused(model_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    with open(copy / "model.ubj", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_model(copy)


def test_missing_model_says_how_to_train(tmp_path):
    with pytest.raises(ModelError, match="make train"):
        load_model(tmp_path)


def test_phishing_fixture_scores_above_clean_mail_with_reasons(settings, model):
    scorer = Scorer(settings, model, EMPTY_HISTORY)
    bad = scorer.score(PHISH, tenant="t", message_id="m1")
    good = scorer.score(make_email(), tenant="t", message_id="m2")
    assert bad["score"] > good["score"]
    assert bad["label"] in ("suspicious", "phishing")
    features = {r["feature"] for r in bad["reasons"]}
    built = {"reply_to_domain_mismatch", "msgid_domain_mismatch", "spf_fail", "dmarc_fail", "dmarc_pass", "spf_pass",
             "url_ip_literal", "url_anchor_mismatch", "html_forms", "urgency_terms", "credential_terms", "html_only", "dkim_pass"}
    assert features & built, bad["reasons"]
    assert all(r["contribution"] > 0 for r in bad["reasons"])
    assert set(bad) >= {"tenant", "message_id", "label", "score", "model_version", "sender_known", "degraded", "reasons", "timings"}
    # No content leaks into the verdict.
    text = json.dumps(bad)
    for fragment in ("corp-example-login", "mailbox.example.com", "suspended", "203.0.113.9"):
        assert fragment not in text


def test_thresholds_from_settings_override_card(settings, model):
    scorer = Scorer(settings.__class__.from_env(env={"MAILSCORE_THRESHOLD_SUSPICIOUS": "0.01", "MAILSCORE_THRESHOLD_PHISHING": "0.02"}), model)
    assert scorer.label(0.015) == "suspicious" and scorer.label(0.5) == "phishing" and scorer.label(0.001) == "safe"


def test_degraded_without_history_or_sender(settings, model):
    scorer = Scorer(settings, model, None)
    verdict = scorer.score(make_email(), tenant="t", message_id="m")
    assert verdict["degraded"] and verdict["degraded_reasons"] == ["history_disabled"]
    scorer = Scorer(settings, model, EMPTY_HISTORY)
    verdict = scorer.score(make_email(sender="a@one.example, b@two.example"), tenant="t", message_id="m")
    assert verdict["degraded_reasons"] == ["sender_unidentifiable"]


def test_not_an_email_raises_invalid(settings, model):
    with pytest.raises(InvalidMessage):
        Scorer(settings, model).score(b"\x89PNG\r\n\x1a\n", tenant="t", message_id="m")


def test_reason_codes():
    assert reason_code("sender_known", 0.0) == "new_sender"
    assert reason_code("dmarc_pass", 0.0) == "dmarc_not_pass"
    assert reason_code("sender_days_known", float("nan")) == "history_unavailable"
    assert reason_code("url_count", 0.0) == "no_links"
    assert reason_code("reply_to_domain_mismatch", 1.0) == "reply_to_domain_mismatch"


def test_auc_matches_definition():
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    pairs = [(p, n) for p in scores[labels == 1] for n in scores[labels == 0]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(labels, scores) == pytest.approx(expected)
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert precision_recall(np.array([1, 0, 1]), np.array([1, 1, 0])) == (0.5, 0.5)


def test_labels_come_from_folder_names():
    assert label_of(Path("x/phish/a.eml")) == 1
    assert label_of(Path("x/Ham/sub/a.eml")) == 0
    assert label_of(Path("x/other/a.eml")) is None
