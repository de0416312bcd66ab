"""The whole pipeline on the emulators: push subscription, function, Bigtable, verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import leakscan
from conftest import CORPUS_DIR, ROOT, TRAIN_DIR
from emails import PHISH, make_email
from mailscore import emulators as emu
from mailscore import runner, topology
from mailscore.profiles import ensure_table
from mailscore.settings import env_var

pytestmark = pytest.mark.emulator


def _pull_all(subscriber, subscription: str, want: int, timeout: float = 60.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=10)
        if response.received_messages:
            got.extend(r.message for r in response.received_messages)
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [r.ack_id for r in response.received_messages]})
    return got


def test_function_scores_and_dead_letters_through_push(unique_settings, tmp_path):
    from google.cloud import pubsub_v1

    settings = unique_settings
    topology.create_topics(settings)
    ensure_table(settings)
    port = emu.free_port()
    env = {**os.environ, env_var("model_dir"): settings.model_dir}
    for name in ("inbound_topic", "verdict_topic", "dead_letter_topic", "profile_table"):
        env[env_var(name)] = getattr(settings, name)
    server = runner.serve_function(env, port, tmp_path / "function.log", workers=1, threads=2)
    try:
        runner.wait_until_serving(port, server)
        subs = topology.create_subscriptions(settings, f"http://127.0.0.1:{port}/", "-t")
        publisher = pubsub_v1.PublisherClient()
        topic = topology.topic_path(settings, settings.inbound_topic)
        publisher.publish(topic, PHISH, tenant="acme", message_id="m-phish").result()
        publisher.publish(topic, make_email(), tenant="acme", message_id="m-ham").result()
        publisher.publish(topic, make_email(), message_id="m-no-tenant").result()
        publisher.publish(topic, b"\x89PNG\r\n\x1a\n\x00\x00binary", tenant="acme", message_id="m-binary").result()
        subscriber = pubsub_v1.SubscriberClient()
        verdicts = _pull_all(subscriber, subs.verdicts, 2)
        dead = _pull_all(subscriber, subs.dead_letter, 2)
    finally:
        emu.stop_process(server)
    by_id = {m.attributes["message_id"]: m for m in verdicts}
    assert set(by_id) == {"m-phish", "m-ham"}
    phish = json.loads(by_id["m-phish"].data)
    ham = json.loads(by_id["m-ham"].data)
    assert phish["score"] > ham["score"]
    assert by_id["m-phish"].attributes["label"] == phish["label"] and by_id["m-phish"].attributes["tenant"] == "acme"
    assert phish["reasons"] and phish["model_version"].startswith("xgb-")
    reasons = {m.attributes["message_id"]: (m.attributes["reason"], m.attributes["stage"]) for m in dead}
    assert reasons == {"m-no-tenant": ("missing_tenant", "decode"), "m-binary": ("not_an_email", "parse")}
    replayable = {m.attributes["message_id"]: m.data for m in dead}
    assert replayable["m-no-tenant"] == make_email()  # payload intact for replay
    log_text = (tmp_path / "function.log").read_text()
    assert "Traceback" not in log_text
    assert "corp-example-login" not in log_text and "alice@corp.example" not in log_text


def assert_run_leaked_nothing(out_dir: Path, inputs: list[Path], summary: dict, runner_output: str) -> None:
    """No address or subject of ``inputs`` in our logs, verdicts.jsonl (but its ``file``), summary or output.

    Scanned: OUT/logs/function.log and update_profile.log (everything the two
    functions and functions-framework wrote), verdicts.jsonl without each
    record's ``file`` (the local path), summary.json, and what the runner
    printed. Not scanned: the emulators' logs (Google's programs; see
    leakscan.EMULATOR_LOG_SUFFIX). How addresses and subjects are matched,
    and why subjects only from 8 characters: see tests/leakscan.py. Failures
    name the file and the kind of leak, never the leaked text.
    """
    # Plain numbers and names in the asserts: pytest prints what a failed expression holds.
    secrets = leakscan.secrets_of_files(inputs)
    n_inputs, n_addresses, n_subjects = len(inputs), secrets.addresses, len(secrets.subjects)
    assert n_addresses > n_inputs // 2 and n_subjects > n_inputs // 2  # the scan looks for something
    logs = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in leakscan.our_logs(out_dir)}
    log_names = sorted(logs)
    assert set(leakscan.OUR_LOGS) <= set(log_names)
    scored_lines = logs["function.log"].count('"message": "scored"')
    update_lines = logs["update_profile.log"].count('"message": "profile update"')
    assert scored_lines >= summary["verdicts"] > 0 and update_lines > 0  # the logs are this run's
    findings = leakscan.scan_run(out_dir, secrets, {"runner output": runner_output})
    assert findings == [], "input addresses/subjects in what mailscore wrote (see the files named)"
    violations = [v for name, text in logs.items() for v in leakscan.metric_label_violations(name, text)]
    assert violations == [], "a log field that becomes a metric label is not a plain code"


def test_run_on_shipped_emails(unique_settings, tmp_path, capfd):
    summary = runner.run([TRAIN_DIR], tmp_path / "out", history=[TRAIN_DIR], settings=unique_settings, progress=False)
    n = len(list(TRAIN_DIR.rglob("*.eml")))
    assert summary["records"] == summary["published"] == n
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert summary["verdicts"] + summary["dead_lettered"] == n
    assert set(summary) >= {"records", "verdicts", "dead_lettered", "throughput_msgs_per_s", "latency_ms", "precision", "recall", "auc"}
    from mailscore import twins
    assert summary["compiled_twins"] is twins.compiled()
    assert summary["in_sample"] is True
    lines = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == n and len({line["message_id"] for line in lines}) == n
    assert {Path(line["file"]).name for line in lines} == {p.name for p in TRAIN_DIR.rglob("*.eml")}
    assert sum(line.get("sender_known", False) for line in lines) > 10  # profiles were read from Bigtable
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["records"] == n
    captured = capfd.readouterr()
    assert_run_leaked_nothing(tmp_path / "out", sorted(TRAIN_DIR.rglob("*.eml")), summary, captured.out + captured.err)


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS_DIR.is_dir(), reason=f"corpus folder {CORPUS_DIR} absent (set MAILSCORE_CORPUS)")
def test_run_on_real_corpus(unique_settings, tmp_path, capfd):
    summary = runner.run([CORPUS_DIR], tmp_path / "out", history=[TRAIN_DIR], settings=unique_settings, progress=False)
    n = len(list(CORPUS_DIR.rglob("*.eml")))
    assert summary["records"] == n and summary["lost"] == 0
    lines = (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == n
    assert 0.0 <= summary["auc"] <= 1.0 and summary["in_sample"] is False
    captured = capfd.readouterr()  # the log scan runs on this run: no second pass over the corpus
    assert_run_leaked_nothing(tmp_path / "out", sorted(CORPUS_DIR.rglob("*.eml")), summary, captured.out + captured.err)


def test_run_with_shadow_model_reports_both_scores_and_agreement(unique_settings, model_dir, tmp_path):
    from mailscore.compare import agreement, read_verdicts

    summary = runner.run([TRAIN_DIR / "phish"], tmp_path / "out", history=[], settings=unique_settings,
                         progress=False, shadow=model_dir)
    verdicts = read_verdicts([tmp_path / "out" / "verdicts.jsonl"])
    assert verdicts and len(verdicts) == summary["verdicts"]
    for verdict in verdicts:  # the candidate is the live model itself: same score, same label
        assert verdict["shadow"]["score"] == verdict["score"] and verdict["shadow"]["label"] == verdict["label"]
    assert summary["shadow"]["with_shadow"] == len(verdicts) and summary["shadow"]["label_agreement"] == 1.0
    assert agreement(verdicts)["score_mean_abs_diff"] == 0.0


def test_compare_pulls_verdicts_from_a_subscription(unique_settings):
    from google.cloud import pubsub_v1

    settings = unique_settings
    topology.create_topics(settings)
    subscriber = pubsub_v1.SubscriberClient()
    name = topology.subscription_path(settings, f"compare-{settings.verdict_topic}")
    subscriber.create_subscription(request={"name": name, "topic": topology.topic_path(settings, settings.verdict_topic)})
    publisher = pubsub_v1.PublisherClient()
    for live, cand in (("safe", "safe"), ("phishing", "suspicious")):
        verdict = {"label": live, "score": 0.9 if live == "phishing" else 0.1, "model_version": "xgb-live",
                   "shadow": {"model_version": "xgb-cand", "label": cand, "score": 0.5}}
        publisher.publish(topology.topic_path(settings, settings.verdict_topic), json.dumps(verdict).encode()).result()
    env = {**os.environ, env_var("project_id"): settings.project_id, env_var("verdict_topic"): settings.verdict_topic}
    done = subprocess.run([sys.executable, "-m", "mailscore.cli", "compare", "--json", "--subscription", name.rsplit("/", 1)[-1],
                           "--count", "2", "--seconds", "60"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    subscriber.delete_subscription(request={"subscription": name})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["with_shadow"] == 2 and summary["label_agreement"] == 0.5
    assert summary["label_confusion"]["phishing"]["suspicious"] == 1
