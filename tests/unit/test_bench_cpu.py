"""The benchmark's CPU attribution counts a process tree's CPU, and only the process itself when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailscore.bench import cpu_by_group, cpu_profile

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# A child that burns 0.4 s of CPU, says so, and waits; its parent says when it started it and waits.
CHILD = ("import sys, time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
         "print('burned', flush=True)\nsys.stdin.read()\n")
PARENT = ("import subprocess, sys\n"
          f"child = subprocess.Popen([sys.executable, '-c', {CHILD!r}], stdin=subprocess.PIPE)\n"
          "print('started', flush=True)\nsys.stdin.read()\nchild.communicate(b'')\n")


def test_a_group_counts_its_descendants_unless_alone():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline().strip() == b"started"
        groups = {"tree": [parent.pid], "parent": [parent.pid]}
        before = cpu_by_group(groups, alone=("parent",))
        assert parent.stdout.readline().strip() == b"burned"  # the child's line, on the shared stdout
        after = cpu_by_group(groups, alone=("parent",))
        assert after["tree"] - before["tree"] >= 0.3
        assert after["parent"] - before["parent"] < 0.2
        profile = cpu_profile(before, after, messages=100, seconds=1.0)
        assert profile["tree_ms_per_msg"] >= 3.0 and profile["total_ms_per_msg"] >= profile["tree_ms_per_msg"]
    finally:
        parent.communicate(b"", timeout=30)


def test_cpu_bounds_predict_the_ratio_from_cpu_per_message():
    from mailscore.bench import cpu_bounds

    result = {"modes": {"ceiling": {"cpu": {"total_ms_per_msg": 0.5, "busy": 1.0}},
                        "batched": {"cpu": {"total_ms_per_msg": 1.25, "busy": 0.9}}},
              "in_process": {"scoring": {"mean_ms": 0.7}}}
    bounds = cpu_bounds(result)
    assert bounds["batched_over_ceiling_from_cpu"] == 0.36  # 0.5 / 1.25 * 0.9 / 1.0
    assert bounds["batched_cpu_ms_for_half_ceiling"] == 1.0
    assert cpu_bounds({"modes": {"ceiling": {"cpu": {}}}}) == {}


def test_rounds_keep_the_median_run_and_the_median_ratios():
    from mailscore.bench import median_ratios, median_runs

    rounds = [{"batched": {"throughput_msgs_per_s": rate, "cpu": {"busy": rate / 1000}}} for rate in (900.0, 1500.0,
                                                                                                     1200.0)]
    chosen = median_runs(rounds)["batched"]
    assert chosen["throughput_msgs_per_s"] == 1200.0 and chosen["cpu"] == {"busy": 1.2}  # the run kept whole
    assert chosen["rounds_msgs_per_s"] == [900.0, 1500.0, 1200.0]
    # With two rounds the lower is kept, and a round that drained nothing (NaN) counts as the lowest:
    # the failure shows in the result instead of being averaged away.
    kept = median_runs([{"m": {"throughput_msgs_per_s": 5.0}}, {"m": {"throughput_msgs_per_s": float("nan")}}])
    assert kept["m"]["throughput_msgs_per_s"] != kept["m"]["throughput_msgs_per_s"]
    per_round = [{"a": 0.4, "b": None}, {"a": 0.6, "b": None}, {"a": 0.5, "b": None}]
    assert median_ratios(per_round) == {"a": 0.5, "b": None}
    assert median_ratios(None) is None
