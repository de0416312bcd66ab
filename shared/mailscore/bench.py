"""`make bench`: throughput and latency of each way of running the scorer, in one run.

Modes, each on its own topics of the same emulators and fed the same emails:

* ``ceiling``: a no-op relay (the batched worker's pull, publish and ack, with
  a verdict-sized message instead of scoring): the emulators' limit here.
* ``baseline``: what a first implementation does: ``policy.default`` parse,
  one ``read_row``, a ``DMatrix`` predict and a blocking publish per message.
* ``per_message``: the Cloud Function under functions-framework, fed by the
  emulator's push subscription.
* ``batched``: the micro-batched worker (``mailscore batch-worker``).

For each mode the emails are published first (a backlog), then the consumer
drains it: throughput is verdicts per second from the moment the consumer is
ready (model loaded; push switched on) to the last verdict. Then, with the consumer running, emails are published at half of
that rate and the publish-to-verdict latency percentiles are taken. In
process, the scoring cost per message (parse + features + predict, no I/O) is
timed next to bare ``compat32`` and ``policy.default`` parses of the same
messages, interleaved message by message so machine noise hits all alike.

It is a benchmark, not a test: it asserts nothing about time. Results go to
``out/bench.json`` (``ratios`` holds the four headline ratios) and
``out/bench.png``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mailscore import twins
from mailscore.runner import REPO_ROOT

MODES = ("ceiling", "baseline", "per_message", "batched")


def default_corpus() -> Path:
    corpus = REPO_ROOT.parent / "shared" / "corpus"
    return corpus if corpus.is_dir() else REPO_ROOT / "data" / "train"


# --- in-process cost ---------------------------------------------------------


def clear_value_caches() -> None:
    """Empty the scoring core's per-value caches (senders, parameters, charsets, links, domains).

    Some of their keys are unique to one message (a multipart boundary, a
    tracking link). Repeating the same emails would turn those into hits, so
    each pass over the emails starts empty: within one pass, a value is a hit
    only when another message shares it, as in a live stream.
    """
    from mailscore import features, mime, parse, urls

    for module in (features, mime, parse, urls):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def inprocess(raws: list[bytes], settings, model, *, reps: int = 3, progress=None) -> dict:
    """Per-message cost of scoring vs bare parses, interleaved; medians over ``reps``."""
    from mailscore.errors import InvalidMessage
    from mailscore.features import History, extract, parse_sender
    from mailscore.parse import parse_email

    history = History(msg_count=3, first_seen=1.7e9, flagged_count=0, recipients=2)
    kinds = ("scoring", "compat32", "default")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    totals: dict[str, list[float]] = {k: [] for k in kinds}

    def score(raw: bytes) -> None:
        try:
            msg = parse_email(raw, settings.limits)
        except InvalidMessage:
            return
        sender = parse_sender(msg.get("from"))  # the profile key is read first, as the scorer does
        row = extract(msg, history, trusted_authserv_ids=settings.trusted_authserv_ids, limits=settings.limits,
                      sender=sender)
        model.predict(row.reshape(1, -1))

    calls = {
        "scoring": score,
        "compat32": lambda raw: email.message_from_bytes(raw, policy=email.policy.compat32),
        "default": lambda raw: email.message_from_bytes(raw, policy=email.policy.default),
    }
    for raw in raws[:20]:  # warm caches of code, not of data
        for call in calls.values():
            call(raw)
    for _ in range(reps):
        clear_value_caches()  # a value seen in the previous round would be a hit no live stream gets
        rep = dict.fromkeys(kinds, 0.0)
        for raw in raws:
            for kind in kinds:
                started = time.perf_counter()
                calls[kind](raw)
                elapsed = time.perf_counter() - started
                rep[kind] += elapsed
                times[kind].append(elapsed * 1000.0)
        for kind in kinds:
            totals[kind].append(rep[kind])
        if progress:
            progress(f"in-process rep done: scoring/compat32 = {rep['scoring'] / rep['compat32']:.2f}")
    out = {kind: {"mean_ms": round(statistics.median(totals[kind]) / len(raws) * 1000, 4),
                  "p50_ms": _pct(times[kind], 50), "p99_ms": _pct(times[kind], 99)} for kind in kinds}
    out["scoring_over_compat32_parse"] = round(statistics.median(
        s / c for s, c in zip(totals["scoring"], totals["compat32"])), 3)
    out["scoring_over_default_parse"] = round(statistics.median(
        s / d for s, d in zip(totals["scoring"], totals["default"])), 3)
    out["messages"] = len(raws)
    out["reps"] = reps
    return out


# --- consumers run as their own processes --------------------------------------


class RelayScorer:
    """The ceiling's 'scorer': no work, a verdict-sized answer."""

    def __init__(self, size: int) -> None:
        self.pad = "x" * max(0, size - 120)

    def score_batch(self, messages):
        from mailscore.batch_worker import Scored

        return [Scored(m, verdict={"tenant": m.tenant, "message_id": m.message_id, "label": "safe",
                                   "pad": self.pad, "timings": {}}) for m in messages]


def consume_ceiling(settings, subscription: str, pull_threads: int, verdict_bytes: int) -> None:
    from google.cloud import pubsub_v1

    from mailscore.batch_worker import BatchWorker

    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=4 * 1024 * 1024, max_latency=0.005))
    worker = BatchWorker(settings, RelayScorer(verdict_bytes), pubsub_v1.SubscriberClient(), publisher,
                         subscription=subscription, pull_threads=pull_threads)
    _serve_until_stdin_closes(worker)


def consume_batched(settings, subscription: str, pull_threads: int) -> None:
    from mailscore.batch_worker import BatchWorker

    worker = BatchWorker.from_settings(settings, subscription=subscription, pull_threads=pull_threads)
    _serve_until_stdin_closes(worker)


def _serve_until_stdin_closes(worker) -> None:
    threading.Thread(target=lambda: (sys.stdin.read(), worker.stop()), daemon=True).start()
    print("ready", flush=True)
    worker.run()


def baseline_parse(raw: bytes, limits):
    """A first implementation's parse: ``policy.default``, every part's content (robust parser if it raises)."""
    from mailscore.errors import InvalidMessage
    from mailscore.parse import _KNOWN_HEADERS, Attachment, ParsedEmail, parse_email

    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = [(name.lower(), str(value)) for name, value in msg.items()]
        if not any(name in _KNOWN_HEADERS for name, _ in headers):
            raise InvalidMessage("not_an_email", "no RFC 5322 header block was found", stage="parse")
        parsed = ParsedEmail(headers=headers, size=len(raw))
        texts, htmls = [], []
        for part in msg.walk():
            parsed.mime_parts += 1
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if part.get_filename() or not ctype.startswith("text/"):
                payload = part.get_payload(decode=True) or b""
                parsed.attachments.append(Attachment(part.get_filename() or "", ctype, len(payload)))
                continue
            content = part.get_content()
            (htmls if ctype == "text/html" else texts).append(content if isinstance(content, str) else "")
        parsed.text, parsed.html = "\n".join(texts), "\n".join(htmls)
        return parsed
    except InvalidMessage:
        raise
    except Exception:  # noqa: BLE001 - the stdlib's modern parser raises on hostile input
        return parse_email(raw, limits, fast=False)


def consume_baseline(settings, subscription: str) -> None:
    import xgboost as xgb
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from mailscore.batch_worker import from_received
    from mailscore.errors import InvalidMessage
    from mailscore.features import FEATURE_NAMES, extract, parse_sender
    from mailscore.model import load_model
    from mailscore.profiles import ProfileStore
    from mailscore.scoring import Scorer
    from mailscore.worker import dead_letter_attributes, topic_path

    model = load_model(settings.model_dir)
    scorer = Scorer(settings, model)
    store = ProfileStore(settings)
    subscriber = pubsub_v1.SubscriberClient()
    # The function path's own publisher settings: a first implementation, not a sabotaged one.
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.002, max_messages=100))
    verdicts, dead = topic_path(settings, settings.verdict_topic), topic_path(settings, settings.dead_letter_topic)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        try:
            response = subscriber.pull(request={"subscription": subscription, "max_messages": 100}, timeout=2)
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            continue
        for received in response.received_messages:
            message = from_received(received.message)
            try:
                if not message.tenant:
                    raise InvalidMessage("missing_tenant", "no tenant")
                msg = baseline_parse(message.data, settings.limits)
                sender = parse_sender(msg.get("from"))
                history = store.get(message.tenant, sender.address) if sender.address else None
                row = extract(msg, history, trusted_authserv_ids=settings.trusted_authserv_ids, limits=settings.limits)
                rows = row.reshape(1, -1)
                score = float(model.booster.predict(xgb.DMatrix(rows, feature_names=list(FEATURE_NAMES), missing=np.nan))[0])
                verdict = {"tenant": message.tenant, "message_id": message.message_id, "label": scorer.label(score),
                           "score": round(score, 6), "reasons": scorer.reasons(rows)[0]}
                publisher.publish(verdicts, json.dumps(verdict).encode(), tenant=message.tenant,
                                  label=verdict["label"], message_id=message.message_id).result()
            except InvalidMessage as exc:
                publisher.publish(dead, message.data or b"-",
                                  **dead_letter_attributes(message.attributes, message.pubsub_message_id, exc)).result()
            subscriber.acknowledge(request={"subscription": subscription, "ack_ids": [received.ack_id]})


# --- the run -------------------------------------------------------------------


@dataclass
class Stream:
    """The emails to send, in order, with the sender repeat rate they have."""

    raws: list[bytes]
    order: list[int]
    sender_repeat_rate: float
    distinct: int


def build_stream(raws: list[bytes], count: int, seed: int = 7) -> Stream:
    from mailscore.errors import InvalidMessage
    from mailscore.features import parse_sender
    from mailscore.parse import parse_email

    rng = random.Random(seed)
    order = []
    while len(order) < count:
        block = list(range(len(raws)))
        rng.shuffle(block)
        order.extend(block)
    order = order[:count]
    senders = []
    for raw in raws:
        try:
            senders.append(parse_sender(parse_email(raw).get("from")).address)
        except InvalidMessage:
            senders.append(None)
    seen: set[str] = set()
    repeats = 0
    for index in order:
        address = senders[index]
        if address in seen:
            repeats += 1
        elif address:
            seen.add(address)
    return Stream(raws, order, round(repeats / len(order), 4), len(set(s for s in senders if s)))


@dataclass
class Collector:
    """Pulls one verdict subscription, recording when each message id arrived."""

    subscription: str
    arrived: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, threads: int = 2) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        from google.api_core import exceptions as gexc

        while not self.stop.is_set():
            try:
                response = self.subscriber.pull(request={"subscription": self.subscription, "max_messages": 1000},
                                                timeout=2)
            except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
                continue
            now = time.time()
            if not response.received_messages:
                continue
            with self.lock:
                for item in response.received_messages:
                    self.arrived.setdefault(item.message.attributes.get("message_id", ""), now)
            self.subscriber.acknowledge(request={"subscription": self.subscription,
                                                 "ack_ids": [r.ack_id for r in response.received_messages]})

    def count(self, ids) -> int:
        with self.lock:
            return sum(1 for i in ids if i in self.arrived)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.subscriber.close()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from mailscore.settings import Settings

        self.args = args
        self.settings = Settings.from_env()
        self.tag = uuid.uuid4().hex[:6]
        self.out = Path(args.out)

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def mode_settings(self, mode: str):
        s = self.settings
        return s.__class__.from_env(
            inbound_topic=f"bench-{mode}-{self.tag}", verdict_topic=f"bench-verdicts-{mode}-{self.tag}",
            dead_letter_topic=f"bench-dead-{mode}-{self.tag}", batch_subscription=f"bench-{mode}-{self.tag}",
            model_dir=s.model_dir, profile_table=s.profile_table)

    def env(self, settings) -> dict[str, str]:
        from mailscore.settings import env_var

        env = {**os.environ, **self.emulators.env()}
        for name in ("inbound_topic", "verdict_topic", "dead_letter_topic", "batch_subscription", "model_dir",
                     "profile_table", "project_id", "bigtable_instance"):
            env[env_var(name)] = str(Path(getattr(settings, name)).resolve()) if name == "model_dir" else str(
                getattr(settings, name))
        return env

    def run(self) -> dict:
        from mailscore import emulators as emu
        from mailscore import profiles, training
        from mailscore.training import find_emails

        corpus = Path(self.args.corpus) if self.args.corpus else default_corpus()
        files = find_emails([corpus])
        raws = [p.read_bytes() or b" " for p in files]
        self.say(f"{len(raws)} emails from {corpus}")
        model = training.installed_model(self.settings, say=self.say)

        result: dict = {"corpus": str(corpus), "emails": len(raws), "machine": {"cpus": os.cpu_count()},
                        "model_version": model.version, "single_row_evaluator": model.evaluator is not None,
                        "compiled_twins": twins.compiled()}
        self.say("in-process scoring cost vs bare parses ...")
        result["in_process"] = inprocess(raws, self.settings, model, reps=self.args.reps, progress=self.say)
        self.say(f"scoring/compat32 parse = {result['in_process']['scoring_over_compat32_parse']}")

        stream = build_stream(raws, self.args.count)
        result["stream"] = {"messages": self.args.count, "sender_repeat_rate": stream.sender_repeat_rate,
                            "distinct_senders": stream.distinct}
        self.emulators = emu.start(self.out / "logs")
        os.environ.update(self.emulators.env())
        try:
            profiles.ensure_table(self.settings)
            labelled = [p for p in files if training.label_of(p) is not None]
            if labelled:
                written = profiles.load_profiles(
                    self.settings, training.build_dataset([corpus], self.settings, tenant="bench").profiles)
                self.say(f"loaded {written} sender profiles")
            rounds: list[dict] = []
            base_tag = self.tag
            for number in range(1, self.args.rounds + 1):
                self.tag = f"{base_tag}r{number}"  # fresh topics and subscriptions for each round
                rounds.append({})
                for mode in self.args.modes:
                    self.say(f"round {number}/{self.args.rounds}, mode {mode} ...")
                    m = rounds[-1][mode] = self.run_mode(mode, stream)
                    self.say(f"mode {mode}: {m['throughput_msgs_per_s']} msgs/s, latency p50/p95/p99 "
                             f"{m['latency_ms']['p50']}/{m['latency_ms']['p95']}/{m['latency_ms']['p99']} ms")
            result["modes"] = median_runs(rounds)
            if len(rounds) > 1:
                result["ratios_per_round"] = [ratios({"modes": modes, "in_process": result["in_process"]})
                                              for modes in rounds]
            if labelled:
                from mailscore import bench_cache

                self.say("profile cache: the same stream scored with and without the cache ...")
                result["cache"] = bench_cache.measure(self.settings, [corpus], count=min(2000, len(stream.order)))
                self.say(f"profile cache: hit ratio {result['cache']['hit_ratio']}, p99 with/without "
                         f"{result['cache']['p99_latency_with_over_without']}")
        finally:
            self.emulators.stop()
        result["ratios"] = median_ratios(result.get("ratios_per_round")) or ratios(result)
        result["bounds"] = cpu_bounds(result)
        result.setdefault("cache", {"hit_ratio": None, "p99_latency_with_over_without": None,
                                    "note": "not measured: the bench corpus has no phish/ham labels to build profiles"})
        result["settings"] = {"per_message_workers": self.args.workers, "per_message_threads": self.args.threads,
                              "batched_processes": self.args.processes, "pull_threads": self.args.pull_threads,
                              "batch_max_messages": self.settings.batch_max_messages}
        return result

    def run_mode(self, mode: str, stream: Stream) -> dict:
        from google.cloud import pubsub_v1

        from mailscore import emulators as emu
        from mailscore import runner, topology

        settings = self.mode_settings(mode)
        topology.create_topics(settings)
        subscriber = pubsub_v1.SubscriberClient()
        verdict_sub = topology.subscription_path(settings, f"bench-collect-{mode}-{self.tag}")
        subscriber.create_subscription(request={"name": verdict_sub,
                                                "topic": topology.topic_path(settings, settings.verdict_topic)})
        inbound_sub = topology.create_batch_subscription(settings)
        collector = Collector(verdict_sub)
        collector.start()
        publisher = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_bytes=8 * 1024 * 1024,
                                                         max_latency=0.01))
        topic = topology.topic_path(settings, settings.inbound_topic)
        ids = [f"{mode}-{i:07d}" for i in range(len(stream.order))]
        futures = [publisher.publish(topic, stream.raws[index], tenant="bench", message_id=mid)
                   for mid, index in zip(ids, stream.order)]
        for future in futures:
            future.result(timeout=120)
        self.say(f"  {len(ids)} emails waiting in the backlog")

        consumer = None
        log = open(self.out / "logs" / f"bench-{mode}.log", "ab")
        if mode == "per_message":
            port = emu.free_port()
            consumer = runner.serve_function(self.env(settings), port, self.out / "logs" / "bench-function.log",
                                             workers=self.args.workers, threads=self.args.threads)
            runner.wait_until_serving(port, consumer)
            subscriber.modify_push_config(request={"subscription": inbound_sub,
                                                   "push_config": {"push_endpoint": f"http://127.0.0.1:{port}/"}})
        else:
            argv = [sys.executable, "-m", "mailscore.bench", "--consume", mode, "--subscription", inbound_sub,
                    "--pull-threads", str(self.args.pull_threads)]
            consumers = self.args.processes if mode in ("batched", "ceiling") else 1
            consumer = [subprocess.Popen(argv, env=self.env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, cwd=REPO_ROOT, start_new_session=True) for _ in range(consumers)]
            for proc in consumer:
                proc.stdout.readline()  # "ready": the model is loaded, pulling starts now
        consumer_pids = [proc.pid for proc in consumer] if isinstance(consumer, list) else [consumer.pid]
        groups = {"consumer": consumer_pids, "bench": [os.getpid()]}
        groups.update({f"{name}_emulator": [proc.pid] for name, proc in self.emulators.processes})
        cpu_before = cpu_by_group(groups, alone=("bench",))
        started = time.time()
        try:
            throughput = self.drain(collector, ids, mode, started)
            cpu = cpu_profile(cpu_before, cpu_by_group(groups, alone=("bench",)), collector.count(ids),
                              time.time() - started)
            latency = self.paced(collector, publisher, topic, stream, mode, rate=throughput / 2.0)
        finally:
            if isinstance(consumer, list):
                for proc in consumer:
                    proc.stdin.close()
                for proc in consumer:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        emu.stop_process(proc)
            elif consumer is not None:
                emu.stop_process(consumer)
            collector.close()
            subscriber.close()
            log.close()
        out = {"throughput_msgs_per_s": round(throughput, 1), "latency_ms": latency, "messages": len(ids), "cpu": cpu}
        if mode == "per_message":
            out.update(handler_latency(self.out / "logs" / "bench-function.log", throughput))
        return out

    def drain(self, collector: Collector, ids: list[str], mode: str, started: float) -> float:
        stall = time.monotonic()
        last = 0
        while True:
            done = collector.count(ids)
            if done >= len(ids):
                break
            if done != last:
                last, stall = done, time.monotonic()
                print(f"\r  {mode}: {done}/{len(ids)} verdicts", end="", file=sys.stderr, flush=True)
            elif time.monotonic() - stall > self.args.stall_seconds:
                self.say(f"  {mode}: stalled at {done}/{len(ids)}")
                break
            time.sleep(0.2)
        print("", file=sys.stderr)
        with collector.lock:
            times = [collector.arrived[i] for i in ids if i in collector.arrived]
        if not times or max(times) <= started:
            return float("nan")
        return len(times) / (max(times) - started)

    def paced(self, collector: Collector, publisher, topic: str, stream: Stream, mode: str, *, rate: float) -> dict:
        if not rate or rate != rate:
            return {"p50": None, "p95": None, "p99": None, "rate_msgs_per_s": None}
        total = int(max(50, min(rate * self.args.latency_seconds, len(stream.order))))
        sent: dict[str, float] = {}
        futures = []
        started = time.monotonic()
        for n in range(total):
            due = started + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            mid = f"{mode}-lat-{n:07d}"
            sent[mid] = time.time()
            futures.append(publisher.publish(topic, stream.raws[stream.order[n % len(stream.order)]],
                                             tenant="bench", message_id=mid))
        for future in futures:
            future.result(timeout=60)
        deadline = time.monotonic() + 60
        while collector.count(sent) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        with collector.lock:
            latencies = [(collector.arrived[m] - t) * 1000.0 for m, t in sent.items() if m in collector.arrived]
        return {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "p99": _pct(latencies, 99),
                "rate_msgs_per_s": round(rate, 1), "messages": total, "received": len(latencies)}


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) for every process /proc shows."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_by_group(groups: dict[str, list[int]], alone: tuple[str, ...] = ()) -> dict[str, float] | None:
    """CPU seconds used so far by each group of processes and all their descendants (Linux only).

    Groups named in ``alone`` count their own processes only (the bench
    process is the parent of every other group).
    """
    if not Path("/proc/self/stat").exists():
        return None
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    out = {}
    for name, roots in groups.items():
        seen, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid in seen or pid not in table:
                continue
            seen.add(pid)
            if name not in alone:
                todo.extend(children.get(pid, ()))
        out[name] = sum(table[pid][1] for pid in seen)
    return out


def cpu_profile(before: dict[str, float] | None, after: dict[str, float] | None, messages: int,
                seconds: float) -> dict:
    """Where the machine's CPU went while a mode drained its backlog: ms per message per group.

    ``busy`` is the share of all cores in use; near 1.0 the mode is CPU-bound
    here, and its rate is the cores divided by ``total_ms_per_msg``. Emulators
    the bench did not start itself are not in any group.
    """
    if not before or not after or messages <= 0 or seconds <= 0:
        return {}
    used = {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}
    out = {f"{name}_ms_per_msg": round(used[name] * 1000.0 / messages, 3) for name in used}
    out["total_ms_per_msg"] = round(sum(used.values()) * 1000.0 / messages, 3)
    out["busy"] = round(sum(used.values()) / (seconds * (os.cpu_count() or 1)), 3)
    return out


def handler_latency(log_path: Path, throughput: float) -> dict:
    """The function's own time per request (from its log) and the push concurrency that implies.

    Throughput = requests in flight / time per request; when the implied
    number in flight stays near 1 whatever WORKERS/THREADS are, the
    emulator's push delivery is the bound, not the function.
    """
    latencies = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"scored"' in line:
            try:
                latencies.append(float(json.loads(line)["latency_ms"]))
            except (ValueError, KeyError):
                continue
    if not latencies:
        return {}
    mean = statistics.fmean(latencies)
    return {"handler_latency_ms": {"p50": _pct(latencies, 50), "mean": round(mean, 3), "p99": _pct(latencies, 99)},
            "implied_requests_in_flight": round(throughput * mean / 1000.0, 2)}


def median_runs(rounds: list[dict]) -> dict:
    """Per mode, the round with the median throughput (its latency and CPU kept whole), plus every round's rate."""
    out = {}
    for mode in rounds[0]:
        runs = sorted((r[mode] for r in rounds), key=lambda run: _rate_key(run["throughput_msgs_per_s"]))
        out[mode] = {**runs[(len(runs) - 1) // 2],
                     "rounds_msgs_per_s": [r[mode]["throughput_msgs_per_s"] for r in rounds]}
    return out


def _rate_key(rate) -> float:
    return rate if rate == rate else float("-inf")  # a NaN rate (nothing drained) sorts first


def median_ratios(per_round: list[dict] | None) -> dict | None:
    """Each ratio's median over the rounds: the modes of one round ran minutes apart, on the same machine state."""
    if not per_round:
        return None
    out = {}
    for key in per_round[0]:
        values = [r[key] for r in per_round if r[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def cpu_bounds(result: dict) -> dict:
    """What the CPU attribution says bounds ``batched_over_ceiling``.

    When both modes keep the cores busy, their rates stand in the inverse
    ratio of the CPU each spends per message (all processes counted), times
    the ratio of how busy the cores were. ``batched_cpu_ms_for_half_ceiling``
    is what the batched mode could spend per message and still reach 0.5.
    """
    cpu = {mode: result.get("modes", {}).get(mode, {}).get("cpu") or {} for mode in ("ceiling", "batched")}
    ceiling, batched = cpu["ceiling"], cpu["batched"]
    if not ceiling.get("total_ms_per_msg") or not batched.get("total_ms_per_msg"):
        return {}
    return {
        "ceiling_cpu_ms_per_msg": ceiling["total_ms_per_msg"],
        "batched_cpu_ms_per_msg": batched["total_ms_per_msg"],
        "batched_over_ceiling_from_cpu": round(ceiling["total_ms_per_msg"] / batched["total_ms_per_msg"]
                                               * batched["busy"] / ceiling["busy"], 3),
        "batched_cpu_ms_for_half_ceiling": round(ceiling["total_ms_per_msg"] / 0.5, 3),
        "in_process_scoring_ms": result.get("in_process", {}).get("scoring", {}).get("mean_ms"),
    }


def ratios(result: dict) -> dict:
    modes = result.get("modes", {})

    def rate(mode: str) -> float | None:
        value = modes.get(mode, {}).get("throughput_msgs_per_s")
        return value if value and value == value else None

    def over(a: str, b: str) -> float | None:
        x, y = rate(a), rate(b)
        return round(x / y, 3) if x and y else None

    return {
        "batched_over_baseline": over("batched", "baseline"),
        "per_message_over_baseline": over("per_message", "baseline"),
        "batched_over_ceiling": over("batched", "ceiling"),
        "scoring_over_compat32_parse": result["in_process"]["scoring_over_compat32_parse"],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if m in result.get("modes", {})]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rates = [result["modes"][m]["throughput_msgs_per_s"] or 0 for m in modes]
    left.bar(modes, rates, color=["#999999", "#cc6666", "#6699cc", "#339966"][: len(modes)])
    left.set_ylabel("verdicts per second (backlog drained)")
    left.set_title("throughput")
    for i, value in enumerate(rates):
        left.text(i, value, f"{value:.0f}", ha="center", va="bottom", fontsize=8)
    width = 0.25
    for k, q in enumerate(("p50", "p95", "p99")):
        values = [result["modes"][m]["latency_ms"][q] or 0 for m in modes]
        right.bar(np.arange(len(modes)) + (k - 1) * width, values, width, label=q)
    right.set_xticks(np.arange(len(modes)), modes)
    right.set_yscale("log")
    right.set_ylabel("publish to verdict, ms (at half max rate)")
    right.set_title("latency")
    right.legend()
    inproc = result["in_process"]
    fig.suptitle(f"mailscore bench: {result['emails']} emails x{result['stream']['messages']} msgs; in-process scoring "
                 f"{inproc['scoring']['mean_ms']} ms vs compat32 parse {inproc['compat32']['mean_ms']} ms per message",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailscore.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--corpus", help="folder of .eml files (default ../shared/corpus, else data/train)")
    parser.add_argument("--count", type=int, default=int(os.environ.get("BENCH_COUNT", "6000")),
                        help="messages per mode (the emails repeated in shuffled rounds)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--reps", type=int, default=3, help="in-process repetitions (the median is reported)")
    parser.add_argument("--workers", type=int, default=2, help="functions-framework WORKERS for per_message")
    parser.add_argument("--threads", type=int, default=4, help="functions-framework THREADS for per_message")
    parser.add_argument("--processes", type=int, default=2, help="batched (and ceiling) worker processes")
    parser.add_argument("--pull-threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "1")),
                        help="run every mode this many times; ratios are the medians of the rounds' ratios")
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--consume", choices=("ceiling", "baseline", "batched"), help=argparse.SUPPRESS)
    parser.add_argument("--subscription", help=argparse.SUPPRESS)
    parser.add_argument("--in-process-only", action="store_true",
                        help="only the in-process scoring/compat32 ratio (no emulators); --reps rounds, median printed")
    args = parser.parse_args(argv)
    if args.consume:
        return _consume(args)
    if args.in_process_only:
        return _in_process_only(args)

    Path(args.out, "logs").mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    result = bench.run()
    out = Path(args.out)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "bench.png")
    bench.say(f"ratios: {json.dumps(result['ratios'])}")
    bench.say(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def in_process_ratio(corpus: Path | None = None, *, rounds: int = 5, progress=None) -> dict:
    """Only the in-process measurement: ``rounds`` alternating runs of scoring and bare parses.

    Each round is one ``inprocess`` pass over every email (scoring, compat32
    and default interleaved message by message); the ratio reported is the
    median of the rounds' ratios, so a burst of load on a shared machine
    moves one round, not the result.
    """
    from mailscore.settings import Settings
    from mailscore.training import find_emails, installed_model

    settings = Settings.from_env()
    corpus = corpus or default_corpus()
    raws = [p.read_bytes() or b" " for p in find_emails([corpus])]
    model = installed_model(settings, say=progress)
    runs = [inprocess(raws, settings, model, reps=1) for _ in range(rounds)]
    ratios = [r["scoring_over_compat32_parse"] for r in runs]
    if progress:
        progress("ratios per round: " + ", ".join(f"{r:.3f}" for r in ratios))
    return {"corpus": str(corpus), "emails": len(raws), "rounds": rounds, "compiled_twins": twins.compiled(),
            "scoring_over_compat32_parse": round(statistics.median(ratios), 3),
            "scoring_mean_ms": round(statistics.median(r["scoring"]["mean_ms"] for r in runs), 4),
            "compat32_mean_ms": round(statistics.median(r["compat32"]["mean_ms"] for r in runs), 4),
            "ratios": ratios}


def _in_process_only(args: argparse.Namespace) -> int:
    def say(text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    result = in_process_ratio(Path(args.corpus) if args.corpus else None, rounds=max(1, args.reps), progress=say)
    print(json.dumps(result))
    return 0


def _consume(args: argparse.Namespace) -> int:
    import warnings

    from mailscore.settings import Settings

    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")
    settings = Settings.from_env()
    if args.consume == "ceiling":
        consume_ceiling(settings, args.subscription, args.pull_threads, verdict_bytes=600)
    elif args.consume == "baseline":
        consume_baseline(settings, args.subscription)
    else:
        consume_batched(settings, args.subscription, args.pull_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
