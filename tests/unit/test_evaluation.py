"""Leakage-safe splits, metrics at target false-positive rates, and the evaluation report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CORPUS_DIR, TRAIN_DIR
from emails import make_email
from mailscore import evaluation as ev
from mailscore.features import FEATURE_INDEX, FEATURE_NAMES


def _write(folder, name, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(make_email(**kwargs))


def test_subject_key_ignores_prefixes_tags_and_numbers():
    assert ev.subject_key("Re: [USRP-users] B210 rev 4.2 overflow") == ev.subject_key("FW: B210 rev 5 overflow!")
    assert ev.subject_key("Invoice 88213 overdue") == ev.subject_key("invoice 19 OVERDUE")
    assert ev.subject_key("Quarterly planning") != ev.subject_key("Wire transfer today")


def test_campaign_groups_join_sender_domain_and_near_identical_subject(tmp_path, settings):
    _write(tmp_path / "phish", "a.eml", sender="x@evil-one.example", subject="Your parcel could not be delivered today")
    _write(tmp_path / "phish", "b.eml", sender="y@other-two.example", subject="Your parcels could not be delivered today")
    _write(tmp_path / "phish", "c.eml", sender="z@evil-one.example", subject="Completely different wording here")
    _write(tmp_path / "ham", "d.eml", sender="ann@gmail.com", subject="Lunch on Friday with the team")
    _write(tmp_path / "ham", "e.eml", sender="bob@gmail.com", subject="Minutes of the board meeting")
    corpus = ev.load_corpus([tmp_path], settings)
    groups = dict(zip((p.name for p in corpus.files), ev.campaign_groups(corpus).tolist()))
    assert groups["a.eml"] == groups["b.eml"] == groups["c.eml"]  # near-identical subject, same domain
    assert groups["d.eml"] != groups["e.eml"]  # a shared freemail domain does not join strangers
    assert groups["d.eml"] != groups["a.eml"]


def test_assign_folds_keeps_groups_whole_and_spreads_strata():
    groups = np.array([0, 0, 0, 1, 2, 3, 4, 4, 5, 6])
    strata = ["p", "p", "p", "p", "h", "h", "h", "h", "p", "h"]
    folds = ev.assign_folds(groups, strata, 3)
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1
    assert len(set(folds.tolist())) == 3


def test_threshold_at_fpr_flags_at_most_the_target_share_of_negatives():
    negatives = np.linspace(0.0, 0.99, 100)
    t1 = ev.threshold_at_fpr(negatives, 0.01)
    assert (negatives >= t1).sum() == 1
    t0 = ev.threshold_at_fpr(negatives, 0.001)
    assert (negatives >= t0).sum() == 0 and t0 > negatives.max()
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert (tied >= ev.threshold_at_fpr(tied, 0.5)).sum() <= 2  # ties are never split past the target


def test_average_precision_and_roc_points_by_hand():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # flag 0.9: P=1 R=.5; flag 0.7: P=2/3 R=1  ->  AP = .5*1 + .5*2/3
    assert ev.average_precision(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3)
    fpr, tpr, _ = ev.roc_points(labels, scores)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]


def test_replay_split_test_messages_never_add_history():
    from mailscore.profiles import Observation, replay_split

    obs = [Observation("t", "a@x.example", float(i), True, None) for i in range(4)]
    seen = replay_split(obs, [True, False, True, False])
    assert [h.msg_count for h in seen] == [0, 1, 1, 2]
    assert seen[3].flagged_count == 2  # only the two training messages count


def test_cross_validation_on_shipped_emails_does_not_leak(settings):
    corpus = ev.load_corpus([TRAIN_DIR], settings)
    cache = ev.FeatureCache(corpus, settings)
    cv = ev.cross_validate(corpus, cache, folds=5, neutralised=("mime_parts",))
    assert np.isfinite(cv.scores).all()
    for fold in cv.leakage:
        assert {k: v for k, v in fold.items() if k != "shared_freemail_domains"} == dict.fromkeys(
            ["groups_on_both_sides", "senders_on_both_sides", "sender_domains_on_both_sides",
             "subjects_on_both_sides", "near_identical_subject_pairs_across"], 0)
    assert np.all(cv.contributions[:, FEATURE_INDEX["mime_parts"]] == 0)  # neutralised: never used


def test_evaluate_writes_report_and_plots(tmp_path, settings):
    report = ev.evaluate([TRAIN_DIR], tmp_path, settings, folds=3)
    assert set(report["variants"]) == {"all_features", "artefact_safe"}
    for name in ("report.json", "report.md", "roc.png", "pr.png", "score_histograms.png", "thresholds.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "report.json").read_text())
    safe = saved["variants"]["artefact_safe"]
    assert safe["thresholds"]["suspicious"] <= safe["thresholds"]["phishing"]
    assert {"roc_auc", "pr_auc", "at_fpr_0.01", "at_fpr_0.001"} <= set(safe["overall"])
    assert sum(sum(row.values()) for row in safe["confusion_at_thresholds"].values()) == saved["corpus"]["messages"]
    assert not {e["feature"] for e in safe["feature_importance"]} & set(safe["neutralised_features"])
    assert "| phish |" in (tmp_path / "report.md").read_text()


@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS_DIR / "phish").is_dir(), reason=f"corpus folder {CORPUS_DIR} absent")
def test_evaluate_real_corpus_per_source_without_leakage(tmp_path, settings):
    report = ev.evaluate([CORPUS_DIR], tmp_path, settings, plots=False)
    safe = report["variants"]["artefact_safe"]
    assert len(safe["per_source"]) >= 3 and len(report["corpus"]["sources"]) == len(safe["per_source"])
    for fold in report["split"]["leakage_checks_per_fold"]:
        assert fold["senders_on_both_sides"] == fold["subjects_on_both_sides"] == fold["groups_on_both_sides"] == 0
    assert safe["time_holdout"]["possible"] is False or safe["time_holdout"]["leakage"]["senders_on_both_sides"] == 0
    assert 0.5 < safe["overall"]["roc_auc"] <= 1.0
    assert len(FEATURE_NAMES) > len(safe["neutralised_features"]) > 0
