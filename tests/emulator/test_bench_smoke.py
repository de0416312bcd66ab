"""A tiny run of the benchmark script: it runs every mode and writes the agreed keys (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from conftest import TRAIN_DIR
from mailscore import bench

pytestmark = pytest.mark.emulator


def test_bench_smoke_writes_json_and_plot(emulators, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MAILSCORE_MODEL_DIR", str(model_dir))
    out = tmp_path / "out"
    code = bench.main(["--out", str(out), "--corpus", str(TRAIN_DIR), "--count", "40", "--reps", "1",
                       "--latency-seconds", "1", "--stall-seconds", "30", "--processes", "1", "--workers", "1",
                       "--threads", "2", "--rounds", "2"])
    assert code == 0
    result = json.loads((out / "bench.json").read_text())
    assert set(result["ratios"]) == {"batched_over_baseline", "per_message_over_baseline", "batched_over_ceiling",
                                     "scoring_over_compat32_parse"}
    assert set(result["modes"]) == set(bench.MODES)
    assert len(result["ratios_per_round"]) == 2 and set(result["ratios_per_round"][0]) == set(result["ratios"])
    for mode in bench.MODES:
        assert result["modes"][mode]["throughput_msgs_per_s"] > 0
        assert result["modes"][mode]["throughput_msgs_per_s"] in result["modes"][mode]["rounds_msgs_per_s"]
        assert set(result["modes"][mode]["latency_ms"]) >= {"p50", "p95", "p99"}
        cpu = result["modes"][mode]["cpu"]
        # 40 messages may take less than one 10 ms clock tick in a process: no group is sure to be above 0.
        # (The emulators here are the fixture's, not the bench's: no group for them.)
        assert {"consumer_ms_per_msg", "bench_ms_per_msg", "total_ms_per_msg", "busy"} <= set(cpu)
        assert cpu["total_ms_per_msg"] >= cpu["consumer_ms_per_msg"] >= 0 and 0 <= cpu["busy"] <= 1.05
    assert set(result["cache"]) >= {"hit_ratio", "p99_latency_with_over_without"}
    assert result["in_process"]["messages"] == len(list(TRAIN_DIR.rglob("*.eml")))
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
