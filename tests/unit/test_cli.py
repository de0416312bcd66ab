"""The CLI as a user runs it: exit codes, one JSON line per input, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import CASES_DIR, ROOT, TRAIN_DIR
from emails import PHISH


def mailscore(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailscore.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_score_prints_verdicts_and_reasons(model_dir, tmp_path):
    (tmp_path / "a.eml").write_bytes(PHISH)
    (tmp_path / "b.eml").write_bytes(b"not an email at all")
    done = mailscore("score", "--model-dir", str(model_dir), str(tmp_path / "a.eml"), str(tmp_path / "b.eml"), str(tmp_path / "missing.eml"))
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"].rsplit("/", 1)[-1] for line in lines] == ["a.eml", "b.eml", "missing.eml"]
    assert lines[0]["label"] in ("suspicious", "phishing") and lines[0]["reasons"]
    assert lines[1]["error"] == "not_an_email" and lines[2]["error"] == "unreadable"
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not CASES_DIR.is_dir(), reason=f"{CASES_DIR} absent")
def test_score_every_shared_case(model_dir):
    done = mailscore("score", "--model-dir", str(model_dir), *sorted(str(p) for p in CASES_DIR.iterdir() if p.suffix in (".eml", ".json")))
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len([p for p in CASES_DIR.iterdir() if p.suffix in (".eml", ".json")])
    assert all(("label" in line) != ("error" in line) for line in lines)
    assert [line["error"] for line in lines if "error" in line] == ["missing_tenant"]


def test_missing_model_is_a_clear_usage_error(tmp_path):
    done = mailscore("score", "--model-dir", str(tmp_path), str(TRAIN_DIR / "ham"))
    assert done.returncode == 2 and "make train" in done.stderr and "Traceback" not in done.stderr


def test_publish_refuses_real_cloud_by_default():
    env = {"PUBSUB_EMULATOR_HOST": ""}
    done = mailscore("publish", str(TRAIN_DIR), env=env)
    assert done.returncode == 2 and "PUBSUB_EMULATOR_HOST" in done.stderr


def test_run_without_emulators_stops_with_install_hint(tmp_path):
    env = {"MAILSCORE_SDK_ROOT": str(tmp_path / "no-sdk"), "PUBSUB_EMULATOR_HOST": "", "BIGTABLE_EMULATOR_HOST": ""}
    done = mailscore("run", str(TRAIN_DIR), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 2
    assert "gcloud components install" in done.stderr and "Traceback" not in done.stderr
