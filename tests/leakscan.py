"""Find what an input email says about people (addresses, subjects) in text mailscore writes.

Used by the security tests: after a run, every email address and every
subject of the inputs is looked for in our logs and verdict records. A
finding is reported by where it was found and what kind it is (``address``
or ``subject``), never by the leaked text itself, so a failing test does
not print email content either.

What counts as a secret of an input email:

* addresses: every address in the ``From``, ``To``, ``Cc``, ``Reply-To``,
  ``Return-Path`` and ``Sender`` headers (RFC 2047 decoded), and every
  address-shaped string anywhere else in the message (other headers such as
  ``Received: ... for <x>``, and the body, raw and with each MIME part's
  transfer encoding undone);
* subjects: the ``Subject`` header, decoded and as written, whitespace
  collapsed.

How they are matched, and why:

* addresses exactly: an address is found when some ``@`` in the text is
  preceded by its local part and followed by exactly its domain (not a
  longer one: ``a@corp.example`` is not found in ``a@corp.example.net``),
  compared case-insensitively. Anything shorter (a domain alone, a local
  part alone) would match innocent text.
* subjects only from 8 characters on (after trimming), as case-insensitive
  substrings: short subjects such as "Hi", "test" or "Invoice" occur in
  innocent text (JSON keys, log messages, reason codes), so a match would
  say nothing; 8 characters and more are specific enough that, in text that
  should hold only identifiers, numbers and codes, a match is a leak.

JSON text (log lines, verdict records) is searched both as written and
decoded, so non-ASCII text escaped as ``\\uXXXX`` is still found.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ADDRESS_HEADERS = ("from", "to", "cc", "reply-to", "return-path", "sender")
MIN_SUBJECT_CHARS = 8
MAX_SCAN_BYTES = 2_000_000  # per message: the parse limits bound what mailscore reads far below this

_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_AT_DOMAIN = re.compile(r"@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)")
_SPACE = re.compile(r"\s+")


@dataclass(repr=False)
class Secrets:
    """The addresses (lower-cased, by domain) and subjects (case-folded) of some emails.

    Its repr gives counts only, so a failing assertion that mentions it
    (pytest prints the objects in a failed expression) shows no content.
    """

    by_domain: dict[str, set[str]] = field(default_factory=dict)
    subjects: set[str] = field(default_factory=set)
    short: set[str] = field(default_factory=set)  # present but under MIN_SUBJECT_CHARS: not searched

    def __repr__(self) -> str:
        return f"Secrets(<{self.addresses} addresses, {len(self.subjects)} subjects, {self.short_subjects} short subjects>)"

    @property
    def addresses(self) -> int:
        return sum(len(locals_) for locals_ in self.by_domain.values())

    @property
    def short_subjects(self) -> int:
        return len(self.short)

    def add_address(self, address: str) -> None:
        local, _, domain = address.strip(".").lower().rpartition("@")
        local = local.lstrip(".")
        if local and domain and "." in domain:
            self.by_domain.setdefault(domain.rstrip("."), set()).add(local)

    def add_subject(self, subject: str) -> None:
        normal = _SPACE.sub(" ", subject).strip().casefold()
        if len(normal) >= MIN_SUBJECT_CHARS:
            self.subjects.add(normal)
        elif normal:
            self.short.add(normal)

    def update(self, other: Secrets) -> None:
        for domain, locals_ in other.by_domain.items():
            self.by_domain.setdefault(domain, set()).update(locals_)
        self.subjects |= other.subjects
        self.short |= other.short


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decoded_header(value: str) -> str:
    """RFC 2047 decoded; a chunk in an unknown charset is read as UTF-8 with replacement."""
    try:
        chunks = email.header.decode_header(value)
    except Exception:  # noqa: BLE001 - hostile headers: keep what is written
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii"))
        except (LookupError, UnicodeDecodeError):
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def secrets_of(raw: bytes) -> Secrets:
    """The addresses and subjects of one raw email (any bytes; nothing here raises)."""
    raw = raw[:MAX_SCAN_BYTES]
    found = Secrets()
    text = _text(raw)
    for address in _ADDRESS.findall(text):  # anywhere in the message, as written
        found.add_address(address)
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for name, value in message.items():
        value = str(value)
        decoded = _decoded_header(value)
        if name.lower() in ADDRESS_HEADERS:
            try:
                pairs = email.utils.getaddresses([decoded])
            except Exception:  # noqa: BLE001 - the regex below still reads the header
                pairs = []
            for _, address in pairs:
                if "@" in address:
                    found.add_address(address)
        for address in _ADDRESS.findall(decoded):
            found.add_address(address)
        if name.lower() == "subject":
            found.add_subject(value)
            found.add_subject(decoded)
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001
            payload = None
        if isinstance(payload, bytes):
            for address in _ADDRESS.findall(_text(payload)):
                found.add_address(address)
    return found


def secrets_of_files(paths: Iterable[Path]) -> Secrets:
    out = Secrets()
    for path in paths:
        out.update(secrets_of(Path(path).read_bytes()))
    return out


def _strings(node) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def searchable(text: str) -> str:
    """``text`` plus, for each line that is JSON, its decoded strings (so escapes hide nothing)."""
    extra = []
    for line in text.splitlines():
        line = line.strip()
        if line[:1] in "{[":
            try:
                extra.extend(_strings(json.loads(line)))
            except ValueError:
                pass
    return text + "\n" + "\n".join(extra)


def find(secrets: Secrets, text: str) -> dict[str, int]:
    """How many distinct addresses and subjects of ``secrets`` occur in ``text``: {"address": n, "subject": m}."""
    text = searchable(text)
    lower = text.lower()
    leaked_addresses: set[tuple[str, str]] = set()
    for match in _AT_DOMAIN.finditer(lower):
        run = match.group(1)
        # Exactly the domain: the text's domain run equals it (a trailing dot ends a sentence).
        locals_ = secrets.by_domain.get(run) or secrets.by_domain.get(run.rstrip("."))
        if not locals_:
            continue
        before = lower[max(0, match.start() - 64):match.start()]
        for local in locals_:
            if before.endswith(local):
                leaked_addresses.add((local, run))
    folded = _SPACE.sub(" ", text).casefold()
    leaked_subjects = sum(1 for subject in secrets.subjects if subject in folded)
    return {"address": len(leaked_addresses), "subject": leaked_subjects}


def describe(where: str, counts: dict[str, int]) -> list[str]:
    """Content-free finding lines: where, what kind, how many."""
    return [f"{where}: {n} input {kind}{'es' if kind == 'address' else 's'} found" for kind, n in counts.items() if n]


# --- A `mailscore run` output folder --------------------------------------------

# The emulators' own logs (`*-emulator.log`, written when the run starts them)
# are Google's programs, not ours: they stand in for managed services whose
# logging mailscore neither writes nor configures, and in the cloud they do
# not exist. They are left out; everything mailscore's processes write is in.
EMULATOR_LOG_SUFFIX = "-emulator.log"
OUR_LOGS = ("function.log", "update_profile.log")


def our_logs(out_dir: Path) -> list[Path]:
    return sorted(p for p in (out_dir / "logs").glob("*.log") if not p.name.endswith(EMULATOR_LOG_SUFFIX))


def verdict_text(path: Path) -> str:
    """verdicts.jsonl without each record's ``file`` (the local path the runner read)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record.pop("file", None)
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines)


def scan_run(out_dir: Path, secrets: Secrets, extra: dict[str, str] | None = None) -> list[str]:
    """Content-free findings in a run's logs, verdicts.jsonl, summary.json and ``extra`` texts."""
    texts = {f"logs/{p.name}": p.read_text(encoding="utf-8", errors="replace") for p in our_logs(out_dir)}
    texts["verdicts.jsonl (without file)"] = verdict_text(out_dir / "verdicts.jsonl")
    texts["summary.json"] = (out_dir / "summary.json").read_text(encoding="utf-8")
    texts.update(extra or {})
    findings = []
    for where, text in texts.items():
        findings.extend(describe(where, find(secrets, text)))
    return findings


# Fields the log-based metrics turn into labels (infra/terraform/monitoring.tf),
# and the shape each value must have: codes and versions, never text.
METRIC_LABEL_FIELDS = {
    "label": re.compile(r"(safe|suspicious|phishing)"),
    "model_version": re.compile(r"xgb-[0-9a-f]{12}"),
    "reason": re.compile(r"[a-z][a-z0-9_]{0,63}"),
    "stage": re.compile(r"[a-z][a-z0-9_]{0,31}"),
}


def metric_label_violations(where: str, text: str) -> list[str]:
    """Log lines whose metric-label fields are not plain codes (content-free descriptions)."""
    bad = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for name, shape in METRIC_LABEL_FIELDS.items():
            value = entry.get(name)
            if value is not None and not (isinstance(value, str) and shape.fullmatch(value)):
                bad.append(f"{where}:{number}: field {name!r} is not a code")
    return bad
