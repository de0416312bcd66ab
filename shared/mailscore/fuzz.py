"""Mutation fuzzing of the parser and feature extractor, and hostile-input generators.

``mutate`` applies one of several fault kinds seen in real mail pipelines
(truncation, byte flips, header duplication, nesting bombs, encoding mixes,
separator stuffing, line-ending chaos, NULs, giant lines, missing
boundaries) to a seed email. ``hostile_variants`` generates emails of each
kind in ``../shared/cases`` from scratch. ``run`` drives parse + extract over
mutated inputs and counts crashes (anything but ``InvalidMessage``) and
inputs over the per-message time budget. Crashing inputs are saved (never
logged) so each can become a test.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from mailscore.errors import InvalidMessage
from mailscore.features import extract
from mailscore.parse import parse_email
from mailscore.settings import ParseLimits

CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb2312", "utf-7", "default",
            "utf-8  xyz", "x-unknown", "", "\"", "utf-16", "ascii"]


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, sep, body = raw.partition(b"\r\n\r\n")
    return head.splitlines(), body


def _join(lines: list[bytes], body: bytes) -> bytes:
    return b"\n".join(lines) + b"\n\n" + body


def _encoded_word(rng: random.Random, text: bytes) -> bytes:
    charset = rng.choice(CHARSETS).encode("ascii", "replace") or b"utf-8"
    if rng.random() < 0.5:
        return b"=?" + charset + b"?B?" + base64.b64encode(text) + b"?="
    return b"=?" + charset + b"?Q?" + b"".join(b"=%02X" % byte for byte in text) + b"?="


MAX_INPUT_BYTES = 12 * 1024 * 1024  # above Pub/Sub's limit already; bigger inputs travel by claim-check


def mutate(raw: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of ``raw``: (kind, new bytes), at most ``MAX_INPUT_BYTES``."""
    kind = rng.choice(MUTATIONS)
    return kind, _MUTATORS[kind](raw[:MAX_INPUT_BYTES], rng)[:MAX_INPUT_BYTES]


def _truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(0, max(1, len(raw)))]


def _flip(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 64)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _dup_headers(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    if not lines:
        return raw
    line = rng.choice(lines)[:4000]
    return _join(lines + [line] * rng.choice([2, 50, 1000, 5000]), body)


def _nesting_bomb(raw: bytes, rng: random.Random) -> bytes:
    return nesting_bomb(raw, rng.choice([10, 60, 300]))


def nesting_bomb(raw: bytes, depth: int) -> bytes:
    head = b"From: a@bomb.example\nTo: b@corp.example\nSubject: nest\nMIME-Version: 1.0\n"
    head += b'Content-Type: multipart/mixed; boundary="b0"\n\n'
    body = b""
    for level in range(depth):
        body += b"--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n" % (level, level + 1)
    body += b"--b%d\nContent-Type: text/plain\n\n" % depth + raw[:2000] + b"\n"
    return head + body


def _encoding_mix(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    out = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon and rng.random() < 0.5:
            value = b" " + _encoded_word(rng, value.strip()[:200] + rng.choice([b"", b"\r\nBcc: x@y.example", b"\x00", b"\xff\xfe"]))
        out.append(name + colon + value)
    out.append(b"Content-Transfer-Encoding: " + rng.choice([b"base64", b"quoted-printable", b"8bit", b"x-uuencode", b"bogus"]))
    out.append(b"Content-Type: text/html; charset=" + rng.choice(CHARSETS).encode("ascii", "replace"))
    return _join(out, body)


def _stuffing(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    filler = rng.choice([b";", b"; ", b",", b"(", b"=?", b"\"", b"<", b"@"]) * rng.choice([1000, 20000, 200000])
    return _join(lines + [b"Content-Type: text/plain; charset=utf-8" + filler, b"To: " + filler], body)


def _line_endings(raw: bytes, rng: random.Random) -> bytes:
    return raw.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\r", b"\r\r\n"]))


def _nuls(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 20)):
        data.insert(rng.randrange(len(data) + 1), 0)
    return bytes(data)


def _giant_line(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    return _join(lines + [b"X-Long: " + b"a" * rng.choice([10_000, 200_000, 2_000_000])], body + b"b" * rng.choice([0, 1_000_000]))


def _no_boundary(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    lines = [l for l in lines if not l.lower().startswith(b"content-type")]
    return _join(lines + [b'Content-Type: multipart/alternative; boundary="' + rng.choice([b"never", b"", b"\"", b"--"]) + b'"'], body)


def _from_confusion(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    lines = [l for l in lines if not l.lower().startswith(b"from:")]
    value = rng.choice([b"a@one.example)<b@two.example>", b"<a@x.example> <b@y.example>", b"\"x@y.example\" <>", b"@@@",
                        b"(((((((((((((((((a@b.example", b"a@b.example, c@d.example, " * 200])
    return _join([b"From: " + value] + lines, body)


def _authres(raw: bytes, rng: random.Random) -> bytes:
    lines, body = _split(raw)
    value = rng.choice([b"mx.mailscore.example; dkim=dkim_pass; spf=success(p=REJECT)", b"spf=pass; dkim=pass",
                        b"mx.mailscore.example; dkim=pass reason=\"a;b;c\" (comment (nested; x)) ; spf=",
                        b"mx.mailscore.example;" + b" dmarc=pass;" * 2000, b";;;;;;", b"(((((((("])
    return _join([b"Authentication-Results: " + value] + lines, body)


_MUTATORS = {
    "truncate": _truncate, "byte_flip": _flip, "header_duplication": _dup_headers, "nesting_bomb": _nesting_bomb,
    "encoding_mix": _encoding_mix, "separator_stuffing": _stuffing, "line_endings": _line_endings, "nul_bytes": _nuls,
    "giant_line": _giant_line, "missing_boundary": _no_boundary, "from_confusion": _from_confusion,
    "authres_nonstandard": _authres,
}
MUTATIONS = tuple(_MUTATORS)


def hostile_variants(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """Emails of each hostile kind of ../shared/cases, generated here from a clean base."""
    base = (b"Received: from mail.example.net by mx.mailscore.example; Tue, 03 Mar 2026 10:15:02 +0000\n"
            b"From: Notices <notices@example.net>\nTo: user@corp.example\nSubject: Your parcel is on hold\n"
            b"Date: Tue, 03 Mar 2026 10:15:00 +0000\nMessage-ID: <n1@example.net>\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=utf-8\n\nConfirm delivery at http://parcel-check.example.net/track?id=7\n")
    kinds = {
        "msgid_malformed": lambda r: base.replace(b"<n1@example.net>", r.choice([b"<[k3f9]=.[x7]@o.example.net>", b"<@>", b"<<>>"])),
        "subject_encoded_newline": lambda r: base.replace(b"Your parcel is on hold", _encoded_word(r, b"Invoice\r\nBcc: c@example.org")),
        "from_parseaddr_confusion": lambda r: _from_confusion(base, r),
        "header_semicolon_stuffing": lambda r: _stuffing(base, r),
        "charset_garbage": lambda r: base.replace(b"charset=utf-8", b"charset=" + r.choice(CHARSETS).encode("ascii", "replace")),
        "multipart_boundary_missing": lambda r: _no_boundary(base, r),
        "authres_nonstandard": lambda r: _authres(base, r),
    }
    names = sorted(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]](rng)) for i in range(count)]


def run(seeds: list[bytes], count: int, limits: ParseLimits | None = None, budget_ms: float = 100.0, seed: int = 1,
        crash_dir: Path | None = None, progress: bool = False) -> dict:
    """Drive ``count`` mutated inputs through parse + extract; report crashes and slow inputs."""
    from tqdm import tqdm

    limits = limits or ParseLimits()
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    over_budget = 0
    times: list[float] = []
    for _ in tqdm(range(count), desc="fuzz", unit="input", disable=not progress, file=sys.stderr):
        kind, data = mutate(rng.choice(seeds), rng)
        if rng.random() < 0.2:  # stack a second mutation now and then
            kind2, data = mutate(data, rng)
            kind = f"{kind}+{kind2}"
        kinds[kind.split("+")[0]] += 1
        started = time.perf_counter()
        try:
            extract(parse_email(data, limits), None, trusted_authserv_ids=("mx.mailscore.example",), limits=limits)
        except InvalidMessage as exc:
            rejected[exc.reason] += 1
        except Exception as exc:  # noqa: BLE001 - a crash is exactly what we are counting
            crashes[f"{kind}:{type(exc).__name__}"] += 1
            if crash_dir is not None:
                crash_dir.mkdir(parents=True, exist_ok=True)
                (crash_dir / f"{hashlib.sha256(data).hexdigest()[:16]}.eml").write_bytes(data)
        elapsed = (time.perf_counter() - started) * 1000.0
        times.append(elapsed)
        over_budget += elapsed > budget_ms
    times.sort()
    return {
        "fuzz_inputs": count,
        "fuzz_crashes": sum(crashes.values()),
        "crash_kinds": dict(crashes),
        "rejected_as_invalid": dict(rejected),
        "mutations": dict(kinds),
        "budget_ms": budget_ms,
        "over_budget": over_budget,
        "max_ms": round(times[-1], 3) if times else None,
        "p99_ms": round(times[int(len(times) * 0.99) - 1], 3) if times else None,
    }


def seed_emails(paths: list[Path], limit: int = 400) -> list[bytes]:
    from mailscore.training import find_emails

    files = find_emails([p for p in paths if p.exists()])
    rng = random.Random(3)
    rng.shuffle(files)
    return [f.read_bytes() for f in files[:limit]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mutation fuzzing of the parser and feature extractor")
    parser.add_argument("paths", nargs="*", default=["data/train"])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--out", default="out/fuzz.json")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    seeds = seed_emails([Path(p) for p in args.paths])
    out = Path(args.out)
    result = run(seeds, args.count, budget_ms=args.budget_ms, crash_dir=out.parent / "fuzz-crashes", progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["fuzz_crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
