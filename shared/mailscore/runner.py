"""`make run`: the whole pipeline on the local emulators, from .eml files to a summary.

Starts (or reuses) both emulators, creates the topics, subscriptions and
table, trains a model if none is installed, loads sender profiles, serves
the scoring function with functions-framework behind a push subscription,
publishes every email, collects each verdict or dead-letter record, prints
a summary and writes ``verdicts.jsonl`` and ``summary.json``. Everything it
started is stopped on the way out, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from mailscore import emulators as emu
from mailscore import twins
from mailscore.claimcheck import make_publisher, publish_email
from mailscore.collector import Collecting, Collector, Sent
from mailscore.errors import MailscoreError
from mailscore.model import auc, load_model, precision_recall
from mailscore.settings import Settings, env_var
from mailscore.training import find_emails, label_of

REPO_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("mailscore.runner")


def serve_function(env: dict[str, str], port: int, log_path: Path, workers: int = 2, threads: int = 4,
                   target: str = "score_email") -> subprocess.Popen:
    """Serve functions/<target> with functions-framework on 127.0.0.1:``port``."""
    exe = Path(sys.executable).with_name("functions-framework")
    argv = [
        str(exe) if exe.exists() else "functions-framework",
        "--target", target, "--source", str(REPO_ROOT / "functions" / target / "main.py"),
        "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(port),
    ]
    full_env = {**os.environ, **env, "WORKERS": str(workers), "THREADS": str(threads)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "ab")
    return subprocess.Popen(argv, env=full_env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=REPO_ROOT, start_new_session=True)


def function_env(settings: Settings, emulator_env: dict[str, str], model_dir: Path, shadow: Path | None) -> dict[str, str]:
    """The MAILSCORE_* variables the served function needs (the shadow's only when one is given)."""
    env = {**emulator_env, env_var("model_dir"): str(model_dir.resolve()), env_var("project_id"): settings.project_id}
    for name in ("inbound_topic", "verdict_topic", "dead_letter_topic", "bigtable_instance", "profile_table",
                 "latency_budget_ms", "claim_check_location", "claim_check_threshold_bytes"):
        env[env_var(name)] = str(getattr(settings, name))
    env[env_var("shadow_model_dir")] = str(shadow.resolve()) if shadow is not None else ""
    return env


def wait_until_serving(port: int, server: subprocess.Popen, timeout: float = 120.0) -> None:
    """Block until a worker answers HTTP: it loads the model and clients at import."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise MailscoreError(f"the scoring function exited with code {server.returncode}; see its log")
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise MailscoreError(f"the scoring function did not answer within {timeout:.0f}s")


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def summarise(sent: list[Sent], collected: Collector, started: float, finished: float, model_version: str) -> dict:
    records = [collected.records[s.message_id] for s in sent if s.message_id in collected.records]
    verdicts = [r for r in records if r["status"] == "verdict"]
    dead = [r for r in records if r["status"] == "dead_letter"]
    latencies = [r["latency_ms"] for r in records]
    summary: dict = {
        "records": len(records),
        "published": len(sent),
        "verdicts": len(verdicts),
        "dead_lettered": len(dead),
        "dead_letter_reasons": dict(Counter(r["reason"] for r in dead)),
        "lost": len(sent) - len(records),
        "duplicates": collected.duplicates,
        "dead_letter_after_verdict": collected.dead_letter_after_verdict,
        "labels": dict(Counter(r["label"] for r in verdicts)),
        "degraded": sum(1 for r in verdicts if r.get("degraded")),
        "model_version": model_version,
        "compiled_twins": twins.compiled(),  # the function serves from this install, so it runs the same ones
        "wall_seconds": round(finished - started, 3),
        "throughput_msgs_per_s": round(len(records) / (finished - started), 2) if finished > started else None,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99)},
        "scoring_ms": {
            "p50": percentile([r["timings"]["total_ms"] for r in verdicts], 50),
            "p99": percentile([r["timings"]["total_ms"] for r in verdicts], 99),
        },
    }
    labelled = [r for r in verdicts if "expected" in r]
    if labelled:
        truth = np.array([r["expected"] == "phishing" for r in labelled])
        scores = np.array([r["score"] for r in labelled])
        flagged = np.array([r["label"] != "safe" for r in labelled])
        precision, recall = precision_recall(truth, flagged)
        summary.update(
            labelled=len(labelled),
            positive_labels="suspicious or phishing",
            precision=_clean(precision),
            recall=_clean(recall),
            auc=_clean(auc(truth, scores)),
        )
    return summary


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def format_summary(summary: dict) -> str:
    lines = ["", "mailscore run summary", "-" * 48]

    def row(name: str, value) -> None:
        lines.append(f"{name:<30} {value}")

    row("emails published", summary["published"])
    row("records (verdicts + dead)", summary["records"])
    for label in ("safe", "suspicious", "phishing"):
        row(f"  verdict: {label}", summary["labels"].get(label, 0))
    row("  dead-lettered", summary["dead_lettered"])
    for reason, count in sorted(summary["dead_letter_reasons"].items()):
        row(f"    {reason}", count)
    row("lost", summary["lost"])
    row("duplicates suppressed", summary["duplicates"])
    row("degraded verdicts", summary["degraded"])
    row("model", summary["model_version"])
    row("compiled twins", "yes" if summary.get("compiled_twins") else "no: the pure-Python twins ran (same verdicts, slower)")
    row("throughput (msgs/s)", summary["throughput_msgs_per_s"])
    lat = summary["latency_ms"]
    row("publish->verdict ms p50/95/99", f"{lat['p50']} / {lat['p95']} / {lat['p99']}")
    row("in-function scoring ms p50/99", f"{summary['scoring_ms']['p50']} / {summary['scoring_ms']['p99']}")
    if "auc" in summary:
        if summary.get("in_sample"):
            lines.append("NOTE: the model was trained on these emails: the figures below are in-sample")
        row(f"precision ({summary['positive_labels']})", summary["precision"])
        row("recall", summary["recall"])
        row("ROC AUC", summary["auc"])
    if "shadow" in summary:
        shadow = summary["shadow"]
        row("shadow verdicts", shadow["with_shadow"])
        if shadow["with_shadow"]:
            row("shadow label agreement", shadow["label_agreement"])
            row("shadow score corr. (Pearson)", shadow["score_pearson"])
    lines.append("-" * 48)
    return "\n".join(lines)


def run(
    corpus: list[Path],
    out_dir: Path,
    *,
    history: list[Path],
    tenant: str = "local",
    settings: Settings | None = None,
    train_from: list[Path] | None = None,
    stall_seconds: float = 90.0,
    progress: bool = True,
    workers: int = 2,
    threads: int = 4,
    shadow: Path | None = None,
) -> dict:
    """Run the pipeline on ``corpus``; returns the summary (also written to ``out_dir``)."""
    from mailscore import profiles, topology, training

    settings = settings or Settings.from_env()
    if not settings.claim_check_location:  # a local folder stands in for the claim-check bucket
        settings = dataclasses.replace(settings, claim_check_location=str((out_dir / "claim-check").resolve()))
    if not (os.environ.get("PUBSUB_EMULATOR_HOST") and os.environ.get("BIGTABLE_EMULATOR_HOST")):
        emu.binaries()  # fail first, with the install hint, before any work
    files = find_emails(corpus)
    if not files:
        raise MailscoreError(f"no .eml files under {', '.join(map(str, corpus))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"

    def on_term(signum, frame):  # SIGTERM behaves like Ctrl-C: clean up and stop
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    emulators = None
    server = updater = None
    try:
        model = training.installed_model(settings, train_from)
        model_dir = Path(settings.model_dir)

        print("starting emulators ...", file=sys.stderr)
        emulators = emu.start(log_dir)
        os.environ.update(emulators.env())
        topology.create_topics(settings)
        profiles.ensure_table(settings)
        if history:
            written = profiles.load_profiles(settings, training.build_dataset(history, settings, tenant).profiles)
            print(f"loaded {written} sender profiles from {', '.join(map(str, history))}", file=sys.stderr)

        if shadow is not None:
            candidate = load_model(shadow)  # refuse a broken candidate here, before anything is served
            print(f"shadow model {candidate.version} from {shadow}", file=sys.stderr)
        port = emu.free_port()
        env = function_env(settings, emulators.env(), model_dir, shadow)
        server = serve_function(env, port, log_dir / "function.log", workers, threads)
        update_port = emu.free_port()
        updater = serve_function(env, update_port, log_dir / "update_profile.log", 1, 4, target="update_profile")
        wait_until_serving(port, server)
        wait_until_serving(update_port, updater)
        suffix = "-" + uuid.uuid4().hex[:8]
        subs = topology.create_subscriptions(settings, f"http://127.0.0.1:{port}/", suffix)
        topology.create_update_subscription(settings, f"http://127.0.0.1:{update_port}/", suffix)

        run_id = uuid.uuid4().hex[:8]
        sent = [
            Sent(str(path), f"{run_id}-{i:06d}", label_of(path))
            for i, path in enumerate(files)
        ]
        collecting = Collecting(sent, subs.verdicts, subs.dead_letter, desc="verdicts", progress=progress)
        collected = collecting.collector

        publisher = make_publisher()
        inbound = topology.topic_path(settings, settings.inbound_topic)
        started = time.time()
        futures = []
        for entry in sent:
            data = Path(entry.file).read_bytes()
            attributes = {"tenant": tenant, "message_id": entry.message_id,
                          "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            entry.published_at = time.time()
            futures.append(publish_email(publisher, inbound, data, attributes, settings))
        for future in futures:
            future.result(timeout=60)

        if not collected.wait(len(sent), stall_seconds):
            print(f"\nno progress for {stall_seconds:.0f}s: {len(sent) - len(collected)} emails have no record",
                  file=sys.stderr)
        finished = max((r["latency_ms"] / 1000.0 + collected.sent[m].published_at for m, r in collected.records.items()),
                       default=time.time())
        collecting.close()

        summary = summarise(sent, collected, started, finished, model.version)
        if shadow is not None:
            from mailscore.compare import agreement

            summary["shadow"] = agreement([r for r in collected.records.values() if r.get("status") == "verdict"])
        summary["corpus"] = [str(p) for p in corpus]
        trained_on = [Path(p).resolve() for p in model.card.get("training_data", {}).get("sources", [])]
        summary["model_trained_on"] = [str(p) for p in trained_on]
        # Quality figures on the model's own training data are not evidence of anything.
        summary["in_sample"] = any(
            Path(f.file).resolve().is_relative_to(src) or Path(f.file).resolve() == src for f in sent for src in trained_on
        )
        with open(out_dir / "verdicts.jsonl", "w") as handle:
            for entry in sent:
                record = collected.records.get(entry.message_id) or {
                    "file": entry.file, "message_id": entry.message_id, "status": "lost"}
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(format_summary(summary))
        print(f"wrote {out_dir / 'verdicts.jsonl'} and {out_dir / 'summary.json'}")
        return summary
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in (server, updater):
            if process is not None:
                emu.stop_process(process)
        if emulators is not None:
            emulators.stop()
