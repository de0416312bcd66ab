"""`make chaos`: the pipeline under injected faults, reconciled to the last email.

On the local emulators, a few thousand emails (the corpus when present, else
the shipped ones, repeated with unique ids) plus hostile and poison inputs
are published at a steady rate while, one after another:

1. ``bigtable_restart``: the Bigtable emulator is killed and restarted (its
   data is in memory, so the table and profiles are loaded again, as a real
   instance would still have them);
2. ``worker_restart``: the scoring function's server is killed (SIGKILL, no
   graceful shutdown) and restarted;
3. ``verdict_publish_failure``: the function's connection to Pub/Sub runs
   through a TCP proxy that is cut, so its verdict publishes fail until the
   proxy heals (dead-letter publishes fail alike; both are retried by
   redelivery).

Then every input is reconciled: exactly one verdict (repeats with the same
``verdict_id`` are counted as suppressed duplicates) or one dead-letter
record; ``lost`` must be 0. A mutation fuzz run over the parser and feature
extractor follows. Everything is written to ``out/chaos.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from mailscore import emulators as emu
from mailscore.collector import Collecting, Sent
from mailscore.errors import MailscoreError
from mailscore.settings import Settings, env_var

REPO_ROOT = Path(__file__).resolve().parents[2]


class FaultProxy:
    """A TCP relay on loopback that can be cut: open connections reset, new ones refused."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or self._cut.is_set():
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                _reset(s)
                with self._lock:
                    self._sockets.discard(s)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            _reset(s)

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def build_inputs(paths: list[Path], count: int, hostile: int, seed: int = 5) -> list[tuple[str, bytes, dict, str]]:
    """(label for the record, bytes, extra attributes, expected outcome) for every input."""
    from mailscore import fuzz
    from mailscore.training import find_emails

    files = find_emails(paths)
    if not files:
        raise MailscoreError(f"no .eml files under {', '.join(map(str, paths))}")
    rng = random.Random(seed)
    inputs = []
    for i in range(count):
        path = files[i % len(files)]
        inputs.append((str(path), path.read_bytes(), {}, "verdict"))
    for kind, raw in fuzz.hostile_variants(rng, hostile):
        inputs.append((f"hostile:{kind}", raw, {}, "verdict"))
    poison = max(10, hostile // 10)
    for i in range(poison):
        inputs.append(("poison:not_an_email", bytes(rng.getrandbits(8) for _ in range(64)) + b"\x00", {}, "dead_letter"))
        inputs.append(("poison:missing_tenant", files[i % len(files)].read_bytes(), {"tenant": ""}, "dead_letter"))
    rng.shuffle(inputs)
    return inputs


def run(paths: list[Path], out_dir: Path, *, count: int = 2400, rate: float = 50.0, hostile: int = 150,
        fuzz_count: int = 10_000, history: list[Path] | None = None, settings: Settings | None = None,
        progress: bool = True) -> dict:
    from mailscore import fuzz, profiles, runner, topology, training
    from mailscore.claimcheck import make_publisher, publish_email

    settings = settings or Settings.from_env()
    emu.binaries()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "chaos-logs"

    def say(text: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    emulators = emu.Emulators(log_dir=log_dir)
    server = None
    proxy = None
    saved_env = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "BIGTABLE_EMULATOR_HOST")}
    try:
        model = training.installed_model(settings, say=say)
        model_dir = Path(settings.model_dir)
        history = history if history is not None else [REPO_ROOT / "data" / "train"]

        say("starting emulators ...")
        emulators.start_bigtable()
        emulators.start_pubsub()
        os.environ.update(emulators.env())
        bigtable_port = int(emulators.bigtable_host.rsplit(":", 1)[1])
        topology.create_topics(settings)
        profile_data = training.build_dataset(history, settings, "chaos") if history else None

        def load_table() -> None:
            if profile_data is not None:
                profiles.load_profiles(settings, profile_data.profiles)
            else:
                profiles.ensure_table(settings)

        load_table()
        host, port_text = emulators.pubsub_host.rsplit(":", 1)
        proxy = FaultProxy(host, int(port_text))
        function_port = emu.free_port()
        env = runner.function_env(settings, emulators.env(), model_dir, None)
        env["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{proxy.port}"  # the function's Pub/Sub traffic goes through the proxy
        env[env_var("publish_timeout_seconds")] = "2"  # a cut publish fails fast, and is redelivered

        def start_server():
            proc = runner.serve_function(env, function_port, log_dir / "function.log", 2, 4)
            runner.wait_until_serving(function_port, proc)
            return proc

        server = start_server()
        subs = topology.create_subscriptions(settings, f"http://127.0.0.1:{function_port}/", "-" + uuid.uuid4().hex[:8])

        inputs = build_inputs(paths, count, hostile)
        run_id = uuid.uuid4().hex[:6]
        sent = [Sent(label, f"chaos-{run_id}-{i:06d}", None) for i, (label, _, _, _) in enumerate(inputs)]
        expected = {s.message_id: outcome for s, (_, _, _, outcome) in zip(sent, inputs)}
        collecting = Collecting(sent, subs.verdicts, subs.dead_letter, desc="records", progress=progress)
        collector = collecting.collector

        publisher = make_publisher()
        inbound = topology.topic_path(settings, settings.inbound_topic)
        published = threading.Event()
        publish_errors: list[str] = []

        def publish_all() -> None:
            started = time.monotonic()
            futures = []
            for i, (entry, (_, raw, extra, _)) in enumerate(zip(sent, inputs)):
                wait = started + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # pacing the publisher at the chosen rate
                attributes = {"tenant": "chaos", "message_id": entry.message_id, **extra}
                attributes = {k: v for k, v in attributes.items() if v}
                entry.published_at = time.time()
                futures.append(publish_email(publisher, inbound, raw, attributes, settings))
            for future in futures:
                try:
                    future.result(timeout=120)
                except Exception as exc:  # noqa: BLE001 - counted: such an input was never published
                    publish_errors.append(type(exc).__name__)
            published.set()

        publishing = threading.Thread(target=publish_all, daemon=True)
        publishing.start()
        t0 = time.time()
        faults: list[dict] = []

        def first_record_after(moment: float, predicate) -> float | None:
            times = [r["received_at"] for r in collector.records.values() if r["received_at"] >= moment and predicate(r)]
            return round(min(times) - moment, 3) if times else None

        def fault(kind: str, at: float, down: float, before, after, recovered) -> None:
            delay = t0 + at - time.time()
            if delay > 0:
                time.sleep(delay)  # the fault schedule
            say(f"fault: {kind} for {down:.0f}s")
            started = time.time()
            before()
            time.sleep(down)  # the outage itself
            after()
            healed = time.time()
            # recovery_seconds is measured at the end, from the records: the first
            # record after the heal that shows the path working again.
            faults.append({"kind": kind, "at_seconds": round(started - t0, 1), "down_seconds": round(healed - started, 1),
                           "_healed": healed, "_recovered": recovered})
            say(f"fault: {kind} healed")

        def kill_bigtable() -> None:
            emulators.stop("bigtable")

        def restart_bigtable() -> None:
            emulators.start_bigtable(bigtable_port)
            load_table()

        def kill_worker() -> None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

        def restart_worker() -> None:
            nonlocal server
            server = start_server()

        history_ok = lambda r: r["status"] == "verdict" and r.get("history", {}).get("status") == "read"  # noqa: E731
        any_verdict = lambda r: r["status"] == "verdict"  # noqa: E731
        span = len(sent) / rate
        fault("bigtable_restart", span * 0.15, 4.0, kill_bigtable, restart_bigtable, history_ok)
        fault("worker_restart", span * 0.45, 3.0, kill_worker, restart_worker, any_verdict)
        fault("verdict_publish_failure", span * 0.7, 6.0, proxy.cut, proxy.heal, any_verdict)

        publishing.join()
        say("all published; waiting for every record ...")
        # Pub/Sub's push retry is what recovers a delivery that failed (worker
        # killed, 5xx). The emulator is not faithful there: measured here, it
        # never redelivers a push refused while the endpoint was down, and drops
        # about a third of pushes answered 500 (no retry, no dead-letter). So, as
        # a publisher-side reconciler would, inputs that still have no record
        # once redelivery has had its time are published again with the same
        # message_id; any repeat verdict has the same verdict_id and is
        # suppressed. Counted apart as `redriven`, never hidden in `lost`.
        complete = collector.wait(len(sent), stall_seconds=45)
        missing_before_redrive = len(sent) - len(collector)
        redriven = 0
        for _ in range(3):
            if complete:
                break
            with collector.lock:
                missing = [i for i, s in enumerate(sent) if s.message_id not in collector.records]
            say(f"redriving {len(missing)} inputs without a record")
            futures = []
            for i in missing:
                _, raw, extra, _ = inputs[i]
                attributes = {k: v for k, v in {"tenant": "chaos", "message_id": sent[i].message_id, **extra}.items() if v}
                futures.append(publish_email(publisher, inbound, raw, attributes, settings))
            for future in futures:
                future.result(timeout=60)
            redriven += len(missing)
            complete = collector.wait(len(sent), stall_seconds=45)
        collecting.close()
        if not complete:
            say(f"stalled with {len(sent) - len(collector)} inputs without a record")

        records = collector.records
        for entry in faults:
            entry["recovery_seconds"] = first_record_after(entry.pop("_healed"), entry.pop("_recovered"))
        verdicts = [r for r in records.values() if r["status"] == "verdict"]
        dead = [r for r in records.values() if r["status"] == "dead_letter"]
        mismatched = Counter(
            f"{collector.sent[m].file.split(':')[0] if ':' in collector.sent[m].file else 'email'}:expected_{expected[m]}_got_{r['status']}"
            for m, r in records.items() if r["status"] != expected[m])
        say(f"fuzzing {fuzz_count} mutated inputs ...")
        seeds = fuzz.seed_emails(paths + [REPO_ROOT / "data" / "train"])
        fuzzed = fuzz.run(seeds, fuzz_count, limits=settings.limits, crash_dir=out_dir / "fuzz-crashes", progress=progress)
        result = {
            "published": len(sent) - len(publish_errors),
            "inputs": len(sent),
            "publish_errors": dict(Counter(publish_errors)),
            "verdicts": len(verdicts),
            "duplicates_suppressed": collector.duplicates + collector.dead_letter_after_verdict,
            "dead_letter_after_verdict": collector.dead_letter_after_verdict,
            "dead_lettered": dict(Counter(r["reason"] for r in dead)),
            "degraded": sum(1 for r in verdicts if r.get("degraded")),
            "degraded_reasons": dict(Counter(x for r in verdicts for x in r.get("degraded_reasons", []))),
            "lost": len(sent) - len(records),
            "without_record_before_redrive": missing_before_redrive,
            "redriven": redriven,
            "unexpected_outcomes": dict(mismatched),
            "faults": faults,
            "fuzz_inputs": fuzzed["fuzz_inputs"],
            "fuzz_crashes": fuzzed["fuzz_crashes"],
            "fuzz": fuzzed,
            "model_version": model.version,
            "rate_msgs_per_s": rate,
            "wall_seconds": round(time.time() - t0, 1),
        }
        (out_dir / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "fuzz"}, indent=2))
        print(f"wrote {out_dir / 'chaos.json'}")
        return result
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            emu.stop_process(server)
        if proxy is not None:
            proxy.close()
        emulators.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")
    parser = argparse.ArgumentParser(description="the pipeline under injected faults, reconciled")
    corpus = REPO_ROOT.parent / "shared" / "corpus"
    parser.add_argument("paths", nargs="*", default=[str(corpus if corpus.is_dir() else REPO_ROOT / "data" / "train")])
    parser.add_argument("--out", default="out")
    parser.add_argument("--count", type=int, default=2400)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--hostile", type=int, default=150)
    parser.add_argument("--fuzz", type=int, default=10_000)
    args = parser.parse_args(argv)
    from mailscore.errors import EmulatorNotInstalled

    try:
        result = run([Path(p) for p in args.paths], Path(args.out), count=args.count, rate=args.rate,
                     hostile=args.hostile, fuzz_count=args.fuzz)
    except EmulatorNotInstalled as exc:
        print(f"mailscore chaos: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    ok = result["lost"] == 0 and result["fuzz_crashes"] == 0 and not result["unexpected_outcomes"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
