"""A small chaos run: all three faults injected, every input reconciled, nothing lost."""

from __future__ import annotations

import json

import pytest

from conftest import TRAIN_DIR
from mailscore import chaos

pytestmark = pytest.mark.emulator


def test_chaos_smoke_reconciles_every_input(emulators, model_dir, unique_settings, tmp_path):
    # chaos starts its own emulators (it kills and restarts Bigtable); the session ones stay untouched.
    result = chaos.run([TRAIN_DIR], tmp_path, count=150, rate=40, hostile=21, fuzz_count=200,
                       settings=unique_settings, progress=False)
    assert result["lost"] == 0
    assert result["inputs"] == 150 + 21 + 2 * 10
    assert result["verdicts"] + sum(result["dead_lettered"].values()) == result["inputs"]
    assert result["dead_lettered"].get("missing_tenant") == 10 and result["dead_lettered"].get("not_an_email") == 10
    assert result["unexpected_outcomes"] == {}
    assert [f["kind"] for f in result["faults"]] == ["bigtable_restart", "worker_restart", "verdict_publish_failure"]
    assert result["fuzz_inputs"] == 200 and result["fuzz_crashes"] == 0
    assert json.loads((tmp_path / "chaos.json").read_text())["lost"] == 0
