"""`mailscore compare`: live vs shadow agreement from verdict records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from mailscore.compare import agreement, read_verdicts


def _verdict(label, score, shadow_label=None, shadow_score=None, **extra):
    record = {"label": label, "score": score, "model_version": "xgb-live", **extra}
    if shadow_label is not None:
        record["shadow"] = {"model_version": "xgb-cand", "label": shadow_label, "score": shadow_score}
    return record


def test_agreement_counts_labels_and_correlates_scores():
    verdicts = [
        _verdict("safe", 0.1, "safe", 0.12),
        _verdict("phishing", 0.99, "phishing", 0.97),
        _verdict("suspicious", 0.7, "safe", 0.3),
        _verdict("safe", 0.2, "suspicious", 0.6),
        _verdict("safe", 0.05),  # no shadow: counted, not compared
    ]
    got = agreement(verdicts)
    assert got["verdicts"] == 5 and got["with_shadow"] == 4
    assert got["label_agreement"] == 0.5
    assert got["label_confusion"]["suspicious"]["safe"] == 1 and got["label_confusion"]["safe"]["suspicious"] == 1
    assert got["live_flagged_shadow_safe"] == 1 and got["live_safe_shadow_flagged"] == 1
    assert got["score_spearman"] == pytest.approx(0.8)
    assert -1.0 <= got["score_pearson"] <= 1.0


def test_agreement_reports_shadow_errors_and_no_shadow():
    got = agreement([_verdict("safe", 0.1), {"label": "safe", "score": 0.1, "shadow": {"model_version": "c", "error": "ValueError"}}])
    assert got["with_shadow"] == 0 and got["shadow_errors"] == {"ValueError": 1} and "label_agreement" not in got


def test_read_verdicts_skips_dead_letters_and_lost(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    lines = [_verdict("safe", 0.1, "safe", 0.1, status="verdict"), {"status": "dead_letter", "reason": "missing_tenant"},
             {"status": "lost", "file": "x.eml"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    assert len(read_verdicts([path])) == 1


def test_compare_cli_prints_agreement(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    path.write_text("\n".join(json.dumps(v) for v in [_verdict("safe", 0.1, "safe", 0.2), _verdict("phishing", 0.9, "safe", 0.3)]))
    done = subprocess.run([sys.executable, "-m", "mailscore.cli", "compare", str(path)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "label agreement" in done.stdout and "50.00%" in done.stdout
    done = subprocess.run([sys.executable, "-m", "mailscore.cli", "compare"], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ), timeout=60)
    assert done.returncode == 2 and "subscription" in done.stderr
