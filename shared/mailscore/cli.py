"""`mailscore`: score, publish, train, evaluate, compare, load profiles, tail verdicts, run locally.

Exit codes: 0 success; 1 some inputs were rejected (each with its reason);
2 usage or configuration error (missing model, no emulator configured);
3 a dependency failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from mailscore.errors import ConfigError, EmulatorNotInstalled, InvalidMessage, MailscoreError, ModelError, TransientError
from mailscore.settings import Settings

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_DEPENDENCY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _require_emulator(var: str, allow_cloud: bool) -> None:
    """Refuse to talk to real Google Cloud unless asked to, so nothing leaves by default."""
    if not os.environ.get(var) and not allow_cloud:
        raise ConfigError(
            f"{var} is not set: point it at a local emulator (e.g. {var}=127.0.0.1:8085), "
            "or pass --cloud to use the real service with your default credentials"
        )


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore import envelope
    from mailscore.model import load_model_from
    from mailscore.scoring import Scorer
    from mailscore.training import find_emails

    model = load_model_from(args.model_dir or settings.model_dir, settings.model_cache_dir)
    shadow_location = args.shadow or settings.shadow_model_dir
    shadow = load_model_from(shadow_location, Path(settings.model_cache_dir) / "shadow") if shadow_location else None
    lookup = None
    if args.history:
        _require_emulator("BIGTABLE_EMULATOR_HOST", args.cloud)
        from mailscore.history import HistorySource
        from mailscore.profiles import ProfileStore

        lookup = HistorySource(ProfileStore(settings).read)
    scorer = Scorer(settings, model, lookup, shadow=shadow)
    rejected = 0
    paths: list[Path] = []
    for raw in args.files:
        path = Path(raw)
        paths.extend(find_emails([path]) if path.is_dir() else [path])
    for path in paths:
        record: dict = {"file": str(path)}
        try:
            data = path.read_bytes()
            tenant, message_id = args.tenant, path.name
            if path.suffix.lower() == ".json":
                # A saved Pub/Sub push envelope: decode it as the function would.
                try:
                    payload = json.loads(data)
                except ValueError:
                    raise InvalidMessage("envelope_invalid", "the .json file is not JSON") from None
                message = envelope.from_push_message(payload.get("message") if isinstance(payload, dict) else None)
                envelope.require_tenant(message)
                data, tenant, message_id = message.data, message.tenant, message.message_id
            record.update(scorer.score(data, tenant=tenant, message_id=message_id))
        except OSError as exc:
            rejected += 1
            record.update(error="unreadable", detail=exc.strerror or type(exc).__name__)
        except InvalidMessage as exc:
            rejected += 1
            record.update(error=exc.reason, stage=exc.stage, detail=exc.detail)
        print(json.dumps(record, separators=(",", ":")), flush=True)
    return EXIT_REJECTED if rejected else EXIT_OK


def _neutralised(value: str | None) -> tuple[str, ...] | None:
    """``--neutralise``: None for the default artefact set, () for none, else the named features."""
    if value is None or value == "default":
        return None
    if value == "none":
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore.training import train

    card = train(args.paths, args.out or settings.model_dir, settings, neutralised=_neutralised(args.neutralise),
                 folds=args.folds)
    print(json.dumps({k: card[k] for k in ("model_version", "thresholds", "training_data", "holdout")}, indent=2))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore.evaluation import evaluate

    report = evaluate(args.paths, args.out, settings, folds=args.folds, neutralised=_neutralised(args.neutralise),
                      plots=not args.no_plots)
    for name, variant in report["variants"].items():
        o = variant["overall"]
        print(f"{name:<14} ROC AUC {o['roc_auc']}  PR AUC {o['pr_auc']}  "
              f"recall@1%FPR {o['at_fpr_0.01']['recall']}  recall@0.1%FPR {o['at_fpr_0.001']['recall']}")
    print(f"wrote {Path(args.out) / 'report.json'} and {Path(args.out) / 'report.md'}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore.compare import agreement, format_agreement, read_verdicts

    if not args.files and not args.subscription:
        raise ConfigError("give verdict JSONL files (e.g. out/verdicts.jsonl) and/or --subscription NAME")
    verdicts = read_verdicts(args.files)
    if args.subscription:
        verdicts.extend(_pull_verdicts(args, settings))
    summary = agreement(verdicts)
    print(json.dumps(summary, indent=2) if args.json else format_agreement(summary))
    return EXIT_OK


def _pull_verdicts(args: argparse.Namespace, settings: Settings) -> list[dict]:
    """Pull (and acknowledge) verdicts from an existing subscription until idle, count or time runs out."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from mailscore.topology import subscription_path

    _require_emulator("PUBSUB_EMULATOR_HOST", args.cloud)
    subscriber = pubsub_v1.SubscriberClient()
    name = subscription_path(settings, args.subscription)
    deadline = time.monotonic() + args.seconds
    verdicts: list[dict] = []
    try:
        while time.monotonic() < deadline and not (args.count and len(verdicts) >= args.count):
            try:
                response = subscriber.pull(request={"subscription": name, "max_messages": 100}, timeout=5)
            except gexc.DeadlineExceeded:
                continue
            if not response.received_messages:
                continue
            for received in response.received_messages:
                try:
                    verdicts.append(json.loads(received.message.data))
                except ValueError:
                    continue
            subscriber.acknowledge(request={"subscription": name, "ack_ids": [r.ack_id for r in response.received_messages]})
    finally:
        subscriber.close()
    return verdicts


def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from mailscore.topology import topic_path
    from mailscore.training import find_emails

    from mailscore.claimcheck import make_publisher, publish_email

    _require_emulator("PUBSUB_EMULATOR_HOST", args.cloud)
    files = find_emails(args.paths)
    publisher = make_publisher()
    topic = topic_path(settings, args.topic or settings.inbound_topic)
    futures = []
    for path in tqdm(files, desc="publishing", unit="msg", file=sys.stderr):
        attributes = {"tenant": args.tenant, "message_id": f"{args.prefix}{path.name}"}
        if args.recipient:
            attributes["recipient"] = args.recipient
        futures.append(publish_email(publisher, topic, path.read_bytes(), attributes, settings))
    for future in futures:
        future.result(timeout=60)
    print(f"published {len(files)} emails to {topic}", file=sys.stderr)
    return EXIT_OK


def cmd_load_profiles(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore import profiles
    from mailscore.training import build_dataset

    _require_emulator("BIGTABLE_EMULATOR_HOST", args.cloud)
    written = profiles.load_profiles(settings, build_dataset(args.paths, settings, args.tenant).profiles)
    print(f"wrote {written} sender profiles for tenant {args.tenant}", file=sys.stderr)
    return EXIT_OK


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from mailscore.topology import subscription_path, topic_path

    _require_emulator("PUBSUB_EMULATOR_HOST", args.cloud)
    subscriber = pubsub_v1.SubscriberClient()
    name = subscription_path(settings, f"tail-{os.getpid()}")
    subscriber.create_subscription(request={"name": name, "topic": topic_path(settings, settings.verdict_topic)})
    deadline = time.monotonic() + args.seconds if args.seconds else None
    shown = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                response = subscriber.pull(request={"subscription": name, "max_messages": 100}, timeout=5)
            except gexc.DeadlineExceeded:
                continue
            if response.received_messages:
                for received in response.received_messages:
                    print(received.message.data.decode("utf-8", "replace"), flush=True)
                    shown += 1
                subscriber.acknowledge(request={"subscription": name, "ack_ids": [r.ack_id for r in response.received_messages]})
            if args.count and shown >= args.count:
                break
    finally:
        subscriber.delete_subscription(request={"subscription": name})
        subscriber.close()
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore.replay import replay_dead_letters

    _require_emulator("PUBSUB_EMULATOR_HOST", args.cloud)
    counts = replay_dead_letters(settings, args.subscription, reasons=set(args.reason or ()), limit=args.max,
                                 dry_run=args.dry_run, idle_seconds=args.idle_seconds)
    print(json.dumps(counts, indent=2))
    return EXIT_OK


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from mailscore.runner import REPO_ROOT, run

    history = [] if args.history == "none" else [Path(p) for p in (args.history or str(REPO_ROOT / "data" / "train")).split(",")]
    summary = run(
        [Path(p) for p in args.paths] or [REPO_ROOT / "data" / "train"],
        Path(args.out),
        history=history,
        tenant=args.tenant,
        settings=settings,
        progress=not args.no_progress,
        workers=args.workers,
        threads=args.threads,
        shadow=Path(args.shadow or settings.shadow_model_dir) if (args.shadow or settings.shadow_model_dir) else None,
    )
    return EXIT_OK if summary["lost"] == 0 else EXIT_DEPENDENCY


def cmd_batch_worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from mailscore.batch_worker import BatchWorker

    _require_emulator("PUBSUB_EMULATOR_HOST", args.cloud)
    _require_emulator("BIGTABLE_EMULATOR_HOST", args.cloud)
    if args.processes > 1:
        return _run_processes(args)
    options = {"pull_threads": args.pull_threads, "max_wait_ms": args.max_wait_ms}
    if args.subscription:
        from mailscore.topology import subscription_path

        options["subscription"] = subscription_path(settings, args.subscription)
    worker = BatchWorker.from_settings(settings, **options)
    # SIGTERM (Cloud Run, GKE) and Ctrl-C stop pulling and drain what is in flight.
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: worker.stop())
    counts = worker.run(seconds=args.seconds or None)
    print(json.dumps(counts), file=sys.stderr)
    return EXIT_OK


def _run_processes(args: argparse.Namespace) -> int:
    """Several single-process workers side by side; SIGTERM is passed on to each."""
    import signal
    import subprocess

    argv = [sys.executable, "-m", "mailscore.cli", "batch-worker", "--processes", "1",
            "--pull-threads", str(args.pull_threads), "--max-wait-ms", str(args.max_wait_ms)]
    argv += ["--seconds", str(args.seconds)] if args.seconds else []
    argv += ["--subscription", args.subscription] if args.subscription else []
    argv += ["--cloud"] if args.cloud else []
    children = [subprocess.Popen(argv) for _ in range(args.processes)]

    def forward(signum, frame):
        for child in children:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailscore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("score", help="score .eml files offline; one JSON verdict per line")
    p.add_argument("files", nargs="+", help=".eml files or folders (a .json file is read as a Pub/Sub push envelope)")
    p.add_argument("--model-dir", help="model folder (default: MAILSCORE_MODEL_DIR or models/active)")
    p.add_argument("--tenant", default="local")
    p.add_argument("--history", action="store_true", help="read sender history from Bigtable (BIGTABLE_EMULATOR_HOST)")
    p.add_argument("--shadow", help="also score with this candidate model (default: MAILSCORE_SHADOW_MODEL_DIR)")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_score)

    neutralise_help = ("features to set to missing: 'default' (the artefact features, see README), 'none', "
                       "or a comma-separated list")
    p = sub.add_parser("train", help="train the model on phish/ and ham/ folders of .eml files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", help="model folder to install into (default: MAILSCORE_MODEL_DIR or models/active)")
    p.add_argument("--neutralise", default="default", help=neutralise_help)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the thresholds (default 5)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="leakage-safe evaluation: report.json, report.md and plots")
    p.add_argument("paths", nargs="+", help="folders with phish/ and ham/ (a MANIFEST.tsv source_group names sources)")
    p.add_argument("--out", default="out/eval")
    p.add_argument("--neutralise", default="default", help=neutralise_help + " for the artefact-safe variant")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="live vs shadow agreement from verdicts (JSONL files and/or a subscription)")
    p.add_argument("files", nargs="*", help="verdict JSONL files, e.g. out/verdicts.jsonl from `make run SHADOW=...`")
    p.add_argument("--subscription", help="also pull verdicts from this existing subscription (emulator)")
    p.add_argument("--seconds", type=float, default=30.0, help="stop pulling after this long (default 30)")
    p.add_argument("--count", type=int, default=0, help="stop pulling after this many verdicts")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("publish", help="publish .eml files or folders to the inbound topic")
    p.add_argument("paths", nargs="+")
    p.add_argument("--tenant", default="local")
    p.add_argument("--recipient")
    p.add_argument("--prefix", default="", help="prefix for the message_id attribute (default: the file name)")
    p.add_argument("--topic", help="topic name (default: MAILSCORE_INBOUND_TOPIC or emails)")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("load-profiles", help="write sender profiles replayed from .eml folders to Bigtable")
    p.add_argument("paths", nargs="+")
    p.add_argument("--tenant", default="local")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_load_profiles)

    p = sub.add_parser("tail", help="print verdicts as they arrive")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--count", type=int, default=0, help="stop after this many verdicts")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("replay", help="republish dead-lettered emails to the inbound topic after a fix")
    p.add_argument("subscription", help="a pull subscription on the dead-letter topic (name or full path)")
    p.add_argument("--reason", action="append", help="only records with this reason (repeatable); others are left unacked")
    p.add_argument("--max", type=int, default=0, help="stop after this many (default: all)")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="stop when nothing arrives for this long")
    p.add_argument("--dry-run", action="store_true", help="count what would be replayed; ack nothing")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("batch-worker", help="the micro-batched worker: pull, score in batches, publish, ack")
    p.add_argument("--subscription", help="pull subscription name (default: MAILSCORE_BATCH_SUBSCRIPTION)")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--pull-threads", type=int, default=4, help="concurrent synchronous pulls per process")
    p.add_argument("--max-wait-ms", type=float, default=20.0, help="longest a batch waits to fill")
    p.add_argument("--seconds", type=float, default=0, help="stop (and drain) after this long (default: until SIGTERM)")
    p.add_argument("--cloud", action="store_true", help="allow real Google Cloud endpoints")
    p.set_defaults(func=cmd_batch_worker)

    p = sub.add_parser("run", help="the whole pipeline on the local emulators (what `make run` calls)")
    p.add_argument("paths", nargs="*", help=".eml files or folders (default: the shipped data/train)")
    p.add_argument("--out", default="out")
    p.add_argument("--history", help="comma-separated folders to load sender profiles from, or 'none' (default: data/train)")
    p.add_argument("--tenant", default="local")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--shadow", help="a candidate model folder scored beside the live one (verdicts get a shadow field)")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mailscore import logs

    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator")
    try:
        settings = Settings.from_env()
        logs.configure(os.environ.get("MAILSCORE_LOG_LEVEL", "WARNING"))
        return args.func(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, ModelError, EmulatorNotInstalled) as exc:
        print(f"mailscore: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TransientError as exc:
        print(f"mailscore: {exc}", file=sys.stderr)
        return EXIT_DEPENDENCY
    except MailscoreError as exc:
        print(f"mailscore: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
